#include <cmath>

#include "kernels/activation.cuh"
#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"

namespace sw::kernels {
namespace {

__device__ inline float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
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

template <typename Fn>
Tensor map(const Tensor& x, const char* op, Fn fn) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t n = x.numel();
  if (n == 0) return y;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), op, [&](auto zero) {
    using T = decltype(zero);
    map_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(static_cast<const T*>(x.raw()),
                                                           static_cast<T*>(y.raw()), n, fn);
  });
  SW_CUDA_CHECK_LAUNCH(op);
  return y;
}

}  // namespace

Tensor relu(const Tensor& x) { return map(x, "relu", Relu{}); }
Tensor gelu(const Tensor& x) { return map(x, "gelu", Gelu{}); }
Tensor gelu_exact(const Tensor& x) { return map(x, "gelu_exact", GeluExact{}); }

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
