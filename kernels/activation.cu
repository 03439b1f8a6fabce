#include <cmath>

#include "kernels/activation.cuh"
#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"

namespace sw::kernels {
namespace {

__device__ inline float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// d gelu_tanh / dx.
__device__ inline float gelu_tanh_grad(float x) {
  const float k = 0.7978845608028654f, c = 0.044715f;
  const float t = tanhf(k * (x + c * x * x * x));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * c * x * x);
}

// d gelu_exact / dx = Phi(x) + x * phi(x).
__device__ inline float gelu_erf_grad(float x) {
  const float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
  return cdf + x * 0.3989422804014327f * expf(-0.5f * x * x);
}

// y[i] = fn(a[i], b[i]).
template <typename T, typename Fn>
__global__ void zip_kernel(const T* a, const T* b, T* y, int64_t n, Fn fn) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) store(y, i, fn(load(a, i), load(b, i)));
}

template <typename T, typename Fn>
__global__ void map_kernel(const T* x, T* y, int64_t n, Fn fn) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) store(y, i, fn(load(x, i)));
}

template <typename T>
__global__ void gated_gelu_kernel(const T* gate, const T* linear, T* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) store(y, i, gelu_tanh(load(gate, i)) * load(linear, i));
}

struct Relu {
  __device__ float operator()(float v) const { return v > 0.0f ? v : 0.0f; }
};
struct Gelu {
  __device__ float operator()(float v) const { return gelu_tanh(v); }
};
struct GeluExact {
  __device__ float operator()(float v) const {
    return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
  }
};

struct ReluGrad {
  __device__ float operator()(float g, float v) const { return v > 0.0f ? g : 0.0f; }
};
struct GeluGrad {
  __device__ float operator()(float g, float v) const { return g * gelu_tanh_grad(v); }
};
struct GeluExactGrad {
  __device__ float operator()(float g, float v) const { return g * gelu_erf_grad(v); }
};
// d(gelu(gate) * linear): dgate = dy * linear * gelu'(gate), dlinear = dy * gelu(gate).
template <typename T>
__global__ void gated_gelu_backward_kernel(const T* dy, const T* gate, const T* linear, T* dgate,
                                           T* dlinear, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = load(dy, i), v = load(gate, i);
  store(dgate, i, g * load(linear, i) * gelu_tanh_grad(v));
  store(dlinear, i, g * gelu_tanh(v));
}

template <typename Fn>
Tensor zip(const Tensor& a, const Tensor& b, const char* op, Fn fn) {
  Tensor y = Tensor::empty(a.shape(), a.dtype(), a.device());
  const int64_t n = a.numel();
  if (n == 0) return y;
  DeviceContext& ctx = device_context(a);
  dispatch_storage(a.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    zip_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(static_cast<const T*>(a.raw()),
                                                           static_cast<const T*>(b.raw()),
                                                           static_cast<T*>(y.raw()), n, fn);
  });
  SW_CUDA_CHECK_LAUNCH(op);
  return y;
}

// y = fn(x) elementwise; y may be x (each element is read before it is written).
template <typename Fn>
void map_into(const Tensor& x, Tensor& y, const char* op, Fn fn) {
  const int64_t n = x.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    map_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(static_cast<const T*>(x.raw()),
                                                           static_cast<T*>(y.raw()), n, fn);
  });
  SW_CUDA_CHECK_LAUNCH(op);
}

template <typename Fn>
Tensor map(const Tensor& x, const char* op, Fn fn) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  map_into(x, y, op, fn);
  return y;
}

}  // namespace

Tensor relu(const Tensor& x) { return map(x, "relu", Relu{}); }
void relu_(Tensor& x) { map_into(x, x, "relu", Relu{}); }
Tensor gelu(const Tensor& x) { return map(x, "gelu", Gelu{}); }
Tensor gelu_exact(const Tensor& x) { return map(x, "gelu_exact", GeluExact{}); }

Tensor relu_backward(const Tensor& dy, const Tensor& x) {
  return zip(dy, x, "relu backward", ReluGrad{});
}
Tensor gelu_backward(const Tensor& dy, const Tensor& x) {
  return zip(dy, x, "gelu backward", GeluGrad{});
}
Tensor gelu_exact_backward(const Tensor& dy, const Tensor& x) {
  return zip(dy, x, "gelu_exact backward", GeluExactGrad{});
}

void gated_gelu_backward(const Tensor& dy, const Tensor& gate, const Tensor& linear, Tensor& dgate,
                         Tensor& dlinear) {
  dgate = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  dlinear = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  const int64_t n = gate.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(gate);
  dispatch_storage(gate.dtype(), "gated_gelu backward", [&](auto zero) {
    using T = decltype(zero);
    gated_gelu_backward_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(dy.raw()), static_cast<const T*>(gate.raw()),
        static_cast<const T*>(linear.raw()), static_cast<T*>(dgate.raw()),
        static_cast<T*>(dlinear.raw()), n);
  });
  SW_CUDA_CHECK_LAUNCH("gated_gelu backward");
}

Tensor gated_gelu(const Tensor& gate, const Tensor& linear) {
  Tensor y = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  const int64_t n = gate.numel();
  if (n == 0) return y;
  DeviceContext& ctx = device_context(gate);
  dispatch_storage(gate.dtype(), "gated_gelu", [&](auto zero) {
    using T = decltype(zero);
    gated_gelu_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(gate.raw()), static_cast<const T*>(linear.raw()),
        static_cast<T*>(y.raw()), n);
  });
  SW_CUDA_CHECK_LAUNCH("gated_gelu");
  return y;
}

}  // namespace sw::kernels
