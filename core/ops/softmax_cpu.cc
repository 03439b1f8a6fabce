#include "core/ops/dispatch.h"
#include "core/ops/softmax.h"

namespace sw::ops {

void softmax_(Tensor& x) {
  require_cpu(x, "softmax");
  const int64_t n = last_dim(x), rows = leading_rows(x);
  dispatch_float(x.dtype(), "softmax", [&](auto zero) {
    using T = decltype(zero);
    T* p = x.data<T>();
#pragma omp parallel for if (rows * n > 65536)
    for (int64_t r = 0; r < rows; ++r) {
      softmax_row(p + r * n, n);
    }
  });
}

Tensor softmax(const Tensor& x) {
  Tensor y = x.clone();
  softmax_(y);
  return y;
}

Tensor softmax_backward(const Tensor& dp, const Tensor& p) {
  require_cpu(p, "softmax backward");
  check_shape(dp, p.shape(), "softmax backward: dp");
  const int64_t n = last_dim(p), rows = leading_rows(p);
  Tensor dx = Tensor::empty(p.shape(), p.dtype());
  dispatch_float(p.dtype(), "softmax backward", [&](auto zero) {
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
  require_cpu(x, "logsumexp");
  SW_CHECK_ARG(x.ndim() >= 1, "logsumexp: expected at least one dimension, got ", x.str());
  const int64_t n = last_dim(x), rows = leading_rows(x);
  SW_CHECK_ARG(n > 0, "logsumexp: empty last dimension in ", x.str());
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  Tensor y = Tensor::empty(out_shape, x.dtype());
  dispatch_float(x.dtype(), "logsumexp", [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for if (rows * n > 65536)
    for (int64_t r = 0; r < rows; ++r) out[r] = logsumexp_row<T>(p + r * n, n);
  });
  return y;
}

}  // namespace sw::ops
