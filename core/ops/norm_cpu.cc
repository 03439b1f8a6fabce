#include <cmath>

#include "core/ops/cpu_util.h"
#include "core/ops/norm.h"

namespace sw::ops::cpu {

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor* inv_rms) {
  const int64_t d = last_dim(x), rows = leading_rows(x);
  require_cpu(weight, "rms_norm");
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  if (inv_rms) *inv_rms = Tensor::empty({rows}, x.dtype());
  visit_float(x.dtype(), "rms_norm", [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.data<T>();
    const T* pw = weight.data<T>();
    T* py = y.data<T>();
    T* pr = inv_rms ? inv_rms->data<T>() : nullptr;
#pragma omp parallel for if (rows * d > 65536)
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = px + r * d;
      T sum_sq = 0;
      for (int64_t i = 0; i < d; ++i) sum_sq += xr[i] * xr[i];
      const T scale = T(1) / std::sqrt(sum_sq / static_cast<T>(d) + static_cast<T>(eps));
      for (int64_t i = 0; i < d; ++i) py[r * d + i] = pw[i] * (xr[i] * scale);
      if (pr) pr[r] = scale;
    }
  });
  return y;
}

Tensor rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& inv_rms, Tensor& dweight) {
  const int64_t d = last_dim(x), rows = leading_rows(x);
  for (const Tensor* t : {&dy, &weight, &inv_rms, static_cast<const Tensor*>(&dweight)})
    require_cpu(*t, "rms_norm backward");
  Tensor dx = Tensor::empty(x.shape(), x.dtype());
  visit_float(x.dtype(), "rms_norm backward", [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.data<T>();
    const T* pw = weight.data<T>();
    const T* pdy = dy.data<T>();
    const T* pr = inv_rms.data<T>();
    T* pdx = dx.data<T>();
    T* pdw = dweight.data<T>();
    // y = w * x * r with r = (mean(x^2) + eps)^-1/2, so
    // dx = r * (w * dy) - x * r^3 / d * sum_j(w_j * dy_j * x_j).
    for (int64_t r = 0; r < rows; ++r) {
      const T* xr = px + r * d;
      const T* gr = pdy + r * d;
      T dot = 0;
      for (int64_t i = 0; i < d; ++i) dot += pw[i] * gr[i] * xr[i];
      const T s = pr[r], coef = s * s * s * dot / static_cast<T>(d);
      for (int64_t i = 0; i < d; ++i) {
        pdx[r * d + i] = s * pw[i] * gr[i] - xr[i] * coef;
        pdw[i] += gr[i] * xr[i] * s;
      }
    }
  });
  return dx;
}

}  // namespace sw::ops::cpu
