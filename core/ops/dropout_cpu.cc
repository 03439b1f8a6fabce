#include "core/ops/cpu_util.h"
#include "core/ops/dropout.h"

namespace sw::ops::cpu {
namespace {

// x [rows, width]; row r reads stream row stream_row(r).
template <typename StreamRow>
void apply_dropout(Tensor& x, const DropoutSpec& spec, int64_t rows, int64_t width,
                   StreamRow stream_row) {
  visit_float(x.dtype(), "dropout", [&](auto zero) {
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
  apply_dropout(x, spec, leading_rows(x), last_dim(x), [](int64_t r) { return r; });
}

void dropout_rows_(Tensor& x, const DropoutSpec& spec, const std::vector<int64_t>& stream_rows) {
  apply_dropout(x, spec, x.dim(0), x.dim(1), [&](int64_t r) { return stream_rows[r]; });
}

}  // namespace sw::ops::cpu
