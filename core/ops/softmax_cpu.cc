#include <algorithm>
#include <cmath>
#include <limits>

#include "core/ops/dispatch.h"
#include "core/ops/softmax.h"

namespace sw::ops {
namespace {

template <typename T>
T row_max(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

}  // namespace

void softmax_(Tensor& x) {
  require_cpu(x, "softmax");
  const int64_t n = last_dim(x), rows = leading_rows(x);
  dispatch_float(x.dtype(), "softmax", [&](auto zero) {
    using T = decltype(zero);
    T* p = x.data<T>();
#pragma omp parallel for if (rows * n > 65536)
    for (int64_t r = 0; r < rows; ++r) {
      T* row = p + r * n;
      const T m = row_max(row, n);
      T sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += (row[i] = std::exp(row[i] - m));
      const T inv = T(1) / sum;
      for (int64_t i = 0; i < n; ++i) row[i] *= inv;
    }
  });
}

Tensor softmax(const Tensor& x) {
  Tensor y = x.clone();
  softmax_(y);
  return y;
}

Tensor logsumexp(const Tensor& x) {
  require_cpu(x, "logsumexp");
  const int64_t n = last_dim(x), rows = leading_rows(x);
  SW_CHECK_ARG(n > 0, "logsumexp: empty last dimension in ", x.str());
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  Tensor y = Tensor::empty(out_shape, x.dtype());
  dispatch_float(x.dtype(), "logsumexp", [&](auto zero) {
    using T = decltype(zero);
    const T* p = x.data<T>();
    T* out = y.data<T>();
#pragma omp parallel for if (rows * n > 65536)
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = p + r * n;
      const T m = row_max(row, n);
      T sum = 0;
      for (int64_t i = 0; i < n; ++i) sum += std::exp(row[i] - m);
      out[r] = m + std::log(sum);
    }
  });
  return y;
}

}  // namespace sw::ops
