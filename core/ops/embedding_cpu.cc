#include <cstring>

#include "core/ops/dispatch.h"

#ifdef SW_WITH_CUDA
#include "kernels/transformer.cuh"
#endif
#include "core/ops/embedding.h"

namespace sw::ops {

void check_token_ids(const Tensor& ids_in, int64_t vocab, const char* what) {
  check_dtype(ids_in, DType::i32, what);
  const Tensor ids = ids_in.device().is_cpu() ? ids_in : ids_in.to(Device::cpu());
  const int32_t* p = ids.data<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    SW_CHECK(p[i] >= 0 && p[i] < vocab, Status::kOutOfRange, what, ": token id ", p[i],
             " at flat position ", i, " is outside the vocabulary [0, ", vocab, ")");
}

void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable) {
  require_cpu(dtable, "embedding backward");
  SW_CHECK_ARG(dtable.ndim() == 2 && dy.numel() == ids.numel() * dtable.dim(1),
               "embedding backward: dy ", dy.str(), " does not match ids ", ids.str(), " and ",
               dtable.str());
  check_token_ids(ids, dtable.dim(0), "embedding backward");
  const int64_t d = dtable.dim(1);
  const int32_t* pid = ids.data<int32_t>();
  dispatch_float(dtable.dtype(), "embedding backward", [&](auto zero) {
    using T = decltype(zero);
    const T* g = dy.data<T>();
    T* out = dtable.data<T>();
    for (int64_t t = 0; t < ids.numel(); ++t)
      for (int64_t i = 0; i < d; ++i) out[pid[t] * d + i] += g[t * d + i];
  });
}

Tensor embedding(const Tensor& table, const Tensor& ids) {
  SW_CHECK_ARG(table.ndim() == 2, "embedding: table must be [vocab, d], got ", table.str());
  SW_CHECK_ARG(table.device() == ids.device(), "embedding: table on ", table.device().str(),
               ", ids on ", ids.device().str());
  const int64_t vocab = table.dim(0), d = table.dim(1);
  check_token_ids(ids, vocab, "embedding");
#ifdef SW_WITH_CUDA
  if (on_cuda(table)) return kernels::embedding(table, ids);
#endif
  require_cpu(table, "embedding");
  Shape out_shape = ids.shape();
  out_shape.push_back(d);
  Tensor y = Tensor::empty(out_shape, table.dtype());
  const size_t row_bytes = static_cast<size_t>(d) * dtype_size(table.dtype());
  const int32_t* pid = ids.data<int32_t>();
  const char* src = static_cast<const char*>(table.raw());
  char* dst = static_cast<char*>(y.raw());
  for (int64_t i = 0; i < ids.numel(); ++i)
    std::memcpy(dst + i * row_bytes, src + pid[i] * row_bytes, row_bytes);
  return y;
}

}  // namespace sw::ops
