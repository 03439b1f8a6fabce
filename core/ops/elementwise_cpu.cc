#include "core/ops/dispatch.h"

#ifdef SW_WITH_CUDA
#include "kernels/elementwise.cuh"
#endif
#include "core/ops/elementwise.h"

namespace sw::ops {

void add_(Tensor& a, const Tensor& b) {
  SW_CHECK_ARG(a.shape() == b.shape() && a.dtype() == b.dtype() && a.device() == b.device(),
               "add: ", a.str(), " and ", b.str(), " differ");
#ifdef SW_WITH_CUDA
  if (on_cuda(a)) return kernels::add_(a, b);
#endif
  require_cpu(a, "add");
  const int64_t n = a.numel();
  dispatch_float(a.dtype(), "add", [&](auto zero) {
    using T = decltype(zero);
    T* pa = a.data<T>();
    const T* pb = b.data<T>();
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) pa[i] += pb[i];
  });
}

void scale_(Tensor& a, double s) {
#ifdef SW_WITH_CUDA
  if (on_cuda(a)) return kernels::scale_(a, s);
#endif
  require_cpu(a, "scale");
  const int64_t n = a.numel();
  dispatch_float(a.dtype(), "scale", [&](auto zero) {
    using T = decltype(zero);
    T* pa = a.data<T>();
    const T factor = static_cast<T>(s);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) pa[i] *= factor;
  });
}

}  // namespace sw::ops
