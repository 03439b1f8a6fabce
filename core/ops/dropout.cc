#include "core/ops/dropout.h"

#include <algorithm>

#include "core/ops/checks.h"
#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/dropout.cuh"

namespace sw::ops {
namespace {

void check_rate(const DropoutSpec& spec) {
  SW_CHECK_ARG(spec.rate < 1.0, "dropout: rate must be in [0, 1), got ", spec.rate);
}

}  // namespace

void dropout_(Tensor& x, const DropoutSpec& spec) {
  if (!spec.active()) return;
  check_rate(spec);
  check_stream_size(x.numel(), "dropout");
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::dropout(x, spec));
  cpu::dropout_(x, spec);
  stored(x);
}

void dropout_rows_(Tensor& x, const DropoutSpec& spec, const std::vector<int64_t>& stream_rows) {
  if (!spec.active()) return;
  check_rate(spec);
  SW_CHECK_ARG(x.ndim() == 2 && x.dim(0) == static_cast<int64_t>(stream_rows.size()),
               "dropout: ", stream_rows.size(), " stream rows for ", x.str());
  int64_t max_row = -1;
  for (int64_t r : stream_rows) max_row = std::max(max_row, r);
  check_stream_size((max_row + 1) * x.dim(1), "dropout");
  if (on_cuda(x))
    SW_RUN_ON_CUDA(kernels::dropout_rows(
        x, spec, Tensor::from_vector<int64_t>(stream_rows, {x.dim(0)}).to(x.device())));
  cpu::dropout_rows_(x, spec, stream_rows);
  stored(x);
}

void dropout_rows_(Tensor& x, const DropoutSpec& spec, const Tensor& stream_rows,
                   int64_t row_limit) {
  if (!spec.active()) return;
  check_dtype(stream_rows, DType::i64, "dropout: stream rows");
  SW_CHECK_ARG(x.ndim() == 2 && stream_rows.numel() == x.dim(0), "dropout: ", stream_rows.numel(),
               " stream rows for ", x.str());
  if (!on_cuda(x) || stream_rows.device().is_cpu()) {  // the rows are on the host: read them
    const Tensor rows = stream_rows.to(Device::cpu());
    dropout_rows_(x, spec,
                  std::vector<int64_t>(rows.data<int64_t>(), rows.data<int64_t>() + rows.numel()));
    return;
  }
  check_rate(spec);
  check_stream_size(row_limit * x.dim(1), "dropout");
  check_same_device({&x, &stream_rows}, "dropout");
  SW_RUN_ON_CUDA(kernels::dropout_rows(x, spec, stream_rows));
}

}  // namespace sw::ops
