#include <cmath>

#include "core/ops/activation.h"
#include "core/ops/cpu_util.h"

namespace sw::ops::cpu {
namespace {

template <typename T>
T gelu_tanh(T x) {
  const T k = static_cast<T>(0.7978845608028654);  // sqrt(2 / pi)
  return static_cast<T>(0.5) * x *
         (T(1) + std::tanh(k * (x + static_cast<T>(0.044715) * x * x * x)));
}

// d/dx of the tanh GELU: 0.5 (1 + t) + 0.5 x (1 - t^2) k (1 + 3 c x^2), t = tanh(k (x + c x^3)).
template <typename T>
T gelu_tanh_grad(T x) {
  const T k = static_cast<T>(0.7978845608028654), c = static_cast<T>(0.044715);
  const T t = std::tanh(k * (x + c * x * x * x));
  return static_cast<T>(0.5) * (T(1) + t) +
         static_cast<T>(0.5) * x * (T(1) - t * t) * k * (T(1) + T(3) * c * x * x);
}

// The exact GELU, x * Phi(x), and its derivative Phi(x) + x * phi(x).
template <typename T>
T gelu_erf(T x) {
  return static_cast<T>(0.5) * x * (T(1) + std::erf(x * static_cast<T>(0.7071067811865476)));
}

template <typename T>
T gelu_erf_grad(T x) {
  const T cdf = static_cast<T>(0.5) * (T(1) + std::erf(x * static_cast<T>(0.7071067811865476)));
  const T pdf = static_cast<T>(0.3989422804014327) * std::exp(static_cast<T>(-0.5) * x * x);
  return cdf + x * pdf;
}

// y[i] = fn(dy[i], x[i]) over two same-shaped cpu tensors.
template <typename Fn>
Tensor zip_elementwise(const Tensor& dy, const Tensor& x, const char* op, Fn fn) {
  require_cpu(dy, op);
  require_cpu(x, op);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const int64_t n = x.numel();
  visit_float(x.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    const T* pd = dy.data<T>();
    const T* px = x.data<T>();
    T* po = out.data<T>();
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) po[i] = fn(pd[i], px[i]);
  });
  return out;
}

template <typename Fn>
Tensor map_elementwise(const Tensor& x, const char* op, Fn fn) {
  require_cpu(x, op);
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  const int64_t n = x.numel();
  visit_float(x.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.data<T>();
    T* py = y.data<T>();
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) py[i] = fn(px[i]);
  });
  return y;
}

}  // namespace

Tensor relu(const Tensor& x) {
  return map_elementwise(x, "relu", [](auto v) { return v > 0 ? v : decltype(v)(0); });
}

Tensor gelu(const Tensor& x) {
  return map_elementwise(x, "gelu", [](auto v) { return gelu_tanh(v); });
}

Tensor gelu_exact(const Tensor& x) {
  return map_elementwise(x, "gelu_exact", [](auto v) { return gelu_erf(v); });
}

Tensor gated_gelu(const Tensor& gate, const Tensor& linear) {
  require_cpu(linear, "gated_gelu");
  Tensor y = Tensor::empty(gate.shape(), gate.dtype());
  const int64_t n = gate.numel();
  visit_float(gate.dtype(), "gated_gelu", [&](auto zero) {
    using T = decltype(zero);
    const T* pg = gate.data<T>();
    const T* pl = linear.data<T>();
    T* py = y.data<T>();
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) py[i] = gelu_tanh(pg[i]) * pl[i];
  });
  return y;
}

Tensor relu_backward(const Tensor& dy, const Tensor& x) {
  return zip_elementwise(dy, x, "relu backward",
                         [](auto g, auto v) { return v > 0 ? g : decltype(g)(0); });
}

Tensor gelu_backward(const Tensor& dy, const Tensor& x) {
  return zip_elementwise(dy, x, "gelu backward",
                         [](auto g, auto v) { return g * gelu_tanh_grad(v); });
}

Tensor gelu_exact_backward(const Tensor& dy, const Tensor& x) {
  return zip_elementwise(dy, x, "gelu_exact backward",
                         [](auto g, auto v) { return g * gelu_erf_grad(v); });
}

void gated_gelu_backward(const Tensor& dy, const Tensor& gate, const Tensor& linear, Tensor& dgate,
                         Tensor& dlinear) {
  // d/dgate = dy * linear * gelu'(gate); d/dlinear = dy * gelu(gate).
  const Tensor dy_linear =
      zip_elementwise(dy, linear, "gated_gelu backward", [](auto g, auto l) { return g * l; });
  dgate = gelu_backward(dy_linear, gate);
  dlinear = zip_elementwise(dy, gate, "gated_gelu backward",
                            [](auto g, auto v) { return g * gelu_tanh(v); });
}

}  // namespace sw::ops::cpu
