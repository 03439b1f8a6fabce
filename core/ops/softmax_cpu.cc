#include "core/ops/cpu_util.h"
#include "core/ops/softmax.h"

namespace sw::ops::cpu {

void softmax_(Tensor& x) {
  const int64_t n = last_dim(x), rows = leading_rows(x);
  visit_float(x.dtype(), "softmax", [&](auto zero) {
    using T = decltype(zero);
    T* p = x.data<T>();
#pragma omp parallel for if (rows * n > 65536)
    for (int64_t r = 0; r < rows; ++r) {
      softmax_row(p + r * n, n);
    }
  });
}

Tensor softmax_backward(const Tensor& dp, const Tensor& p) {
  require_cpu(dp, "softmax backward");
  const int64_t n = last_dim(p), rows = leading_rows(p);
  Tensor dx = Tensor::empty(p.shape(), p.dtype());
  visit_float(p.dtype(), "softmax backward", [&](auto zero) {
    using T = decltype(zero);
    const T* pp = p.data<T>();
    const T* pg = dp.data<T>();
    T* out = dx.data<T>();
#pragma omp parallel for if (rows * n > 65536)
    for (int64_t r = 0; r < rows; ++r) {
      T dot = 0;
      for (int64_t i = 0; i < n; ++i) dot += pg[r * n + i] * pp[r * n + i];
      for (int64_t i = 0; i < n; ++i) out[r * n + i] = pp[r * n + i] * (pg[r * n + i] - dot);
    }
  });
  return dx;
}

Tensor logsumexp(const Tensor& x) {
  const int64_t n = last_dim(x), rows = leading_rows(x);
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  Tensor y = Tensor::empty(out_shape, x.dtype());
  visit_float(x.dtype(), "logsumexp", [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for if (rows * n > 65536)
    for (int64_t r = 0; r < rows; ++r) out[r] = logsumexp_row<T>(p + r * n, n);
  });
  return y;
}

}  // namespace sw::ops::cpu
