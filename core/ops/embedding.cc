#include "core/ops/embedding.h"

#include "core/ops/checks.h"
#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/embedding.cuh"

namespace sw::ops {

void check_token_ids(const Tensor& ids_in, int64_t vocab, const char* what) {
  check_dtype(ids_in, DType::i32, what);
  const Tensor ids = ids_in.device().is_cpu() ? ids_in : ids_in.to(Device::cpu());
  const int32_t* p = ids.data<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    SW_CHECK(p[i] >= 0 && p[i] < vocab, Status::kOutOfRange, what, ": token id ", p[i],
             " at flat position ", i, " is outside the vocabulary [0, ", vocab, ")");
}

Tensor embedding(const Tensor& table, const Tensor& ids, bool ids_checked) {
  SW_CHECK_ARG(table.ndim() == 2, "embedding: table must be [vocab, d], got ", table.str());
  SW_CHECK_ARG(table.device() == ids.device(), "embedding: table on ", table.device().str(),
               ", ids on ", ids.device().str());
  if (!ids_checked) check_token_ids(ids, table.dim(0), "embedding");
  if (on_cuda(table)) SW_RUN_ON_CUDA(kernels::embedding(table, ids));
  return stored(cpu::embedding(table, ids));
}

void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable, bool ids_checked) {
  SW_CHECK_ARG(dtable.ndim() == 2 && dy.numel() == ids.numel() * dtable.dim(1),
               "embedding backward: dy ", dy.str(), " does not match ids ", ids.str(), " and ",
               dtable.str());
  check_same_device({&dtable, &dy, &ids}, "embedding backward");
  check_gradient_dtype(dtable, dy, "embedding backward: dtable");
  if (!ids_checked) check_token_ids(ids, dtable.dim(0), "embedding backward");
  if (on_cuda(dtable)) SW_RUN_ON_CUDA(kernels::embedding_backward(dy, ids, dtable));
  cpu::embedding_backward(dy, ids, dtable);
}

}  // namespace sw::ops
