#include "core/ops/dispatch.h"
#include "core/ops/dropout.h"

namespace sw::ops {

void dropout_(Tensor& x, const DropoutSpec& spec) {
  if (!spec.active()) return;
  require_cpu(x, "dropout");
  SW_CHECK_ARG(spec.rate < 1.0, "dropout: rate must be in [0, 1), got ", spec.rate);
  const int64_t n = x.numel();
  dispatch_float(x.dtype(), "dropout", [&](auto zero) {
    using T = decltype(zero);
    T* p = x.data<T>();
    const T scale = static_cast<T>(1.0 / (1.0 - spec.rate));
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) p[i] = spec.keeps(i) ? p[i] * scale : T(0);
  });
}

}  // namespace sw::ops
