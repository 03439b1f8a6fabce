#include "core/ops/cpu_util.h"
#include "core/ops/elementwise.h"
#include "core/tensor/bf16.h"

namespace sw::ops::cpu {

void add_(Tensor& a, const Tensor& b) {
  const int64_t n = a.numel();
  visit_float(a.dtype(), "add", [&](auto zero) {
    using T = decltype(zero);
    T* pa = a.data<T>();
    const T* pb = b.data<T>();
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) pa[i] += pb[i];
  });
}

void scale_(Tensor& a, double s) {
  const int64_t n = a.numel();
  visit_float(a.dtype(), "scale", [&](auto zero) {
    using T = decltype(zero);
    T* pa = a.data<T>();
    const T factor = static_cast<T>(s);
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) pa[i] *= factor;
  });
}

void round_to_bf16_(Tensor& a) {
  const int64_t n = a.numel();
  float* p = a.data<float>();
#pragma omp parallel for if (n > 65536)
  for (int64_t i = 0; i < n; ++i) p[i] = to_float(to_bf16(p[i]));
}

}  // namespace sw::ops::cpu
