#include <algorithm>

#include "core/ops/dispatch.h"
#include "core/ops/dropout.h"

#ifdef SW_WITH_CUDA
#include "kernels/routing.cuh"
#include "kernels/transformer.cuh"
#endif

namespace sw::ops {
namespace {

// x [rows, width]; row r reads stream row stream_row(r).
template <typename StreamRow>
void apply_dropout(Tensor& x, const DropoutSpec& spec, int64_t rows, int64_t width,
                   StreamRow stream_row) {
  require_cpu(x, "dropout");
  SW_CHECK_ARG(spec.rate < 1.0, "dropout: rate must be in [0, 1), got ", spec.rate);
  dispatch_float(x.dtype(), "dropout", [&](auto zero) {
    using T = decltype(zero);
    T* p = x.data<T>();
    const T scale = static_cast<T>(1.0 / (1.0 - spec.rate));
#pragma omp parallel for if (rows * width > 65536)
    for (int64_t r = 0; r < rows; ++r) {
      const uint64_t base = static_cast<uint64_t>(stream_row(r)) * width;
      T* row = p + r * width;
      spec.for_each_keep(base, width,
                         [&](int64_t j, bool keep) { row[j] = keep ? row[j] * scale : T(0); });
    }
  });
}

}  // namespace

void dropout_(Tensor& x, const DropoutSpec& spec) {
  if (!spec.active()) return;
  const int64_t width = last_dim(x), rows = leading_rows(x);
  check_stream_size(x.numel(), "dropout");
#ifdef SW_WITH_CUDA
  if (on_cuda(x)) {
    SW_CHECK_ARG(spec.rate < 1.0, "dropout: rate must be in [0, 1), got ", spec.rate);
    SW_CHECK(!spec.window, Status::kUnsupported, "dropout: model-parallel parts run on the cpu");
    return kernels::dropout(x, spec);
  }
#endif
  apply_dropout(x, spec, rows, width, [](int64_t r) { return r; });
}

void dropout_rows_(Tensor& x, const DropoutSpec& spec, const std::vector<int64_t>& stream_rows) {
  if (!spec.active()) return;
  SW_CHECK_ARG(x.ndim() == 2 && x.dim(0) == static_cast<int64_t>(stream_rows.size()),
               "dropout: ", stream_rows.size(), " stream rows for ", x.str());
  const int64_t width = x.dim(1);
  int64_t max_row = -1;
  for (int64_t r : stream_rows) max_row = std::max(max_row, r);
  check_stream_size((max_row + 1) * width, "dropout");
#ifdef SW_WITH_CUDA
  if (on_cuda(x)) {
    SW_CHECK_ARG(spec.rate < 1.0, "dropout: rate must be in [0, 1), got ", spec.rate);
    SW_CHECK(!spec.window, Status::kUnsupported, "dropout: model-parallel parts run on the cpu");
    const Tensor rows = Tensor::from_vector<int64_t>(stream_rows, {x.dim(0)}).to(x.device());
    return kernels::dropout_rows(x, spec.rate, spec.stream, rows);
  }
#endif
  apply_dropout(x, spec, x.dim(0), width, [&](int64_t r) { return stream_rows[r]; });
}

}  // namespace sw::ops
