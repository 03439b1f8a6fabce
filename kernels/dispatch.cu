#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/dispatch.cuh"
#include "kernels/reduce.cuh"

namespace sw::kernels {
namespace {

// One block per token: a kept token's row is copied in 16-byte words (rows are 16-byte
// aligned when d * sizeof(T) is a multiple of 16), else element by element.
template <typename T>
__global__ void dispatch_kernel(const T* x, const int32_t* row, T* out, int64_t d, bool wide) {
  const int64_t t = blockIdx.x, r = row[t];
  if (r < 0) return;
  if (wide) {
    const int64_t words = d * sizeof(T) / 16;
    const uint4* src = reinterpret_cast<const uint4*>(x + t * d);
    uint4* dst = reinterpret_cast<uint4*>(out + r * d);
    for (int64_t i = threadIdx.x; i < words; i += blockDim.x) dst[i] = src[i];
  } else {
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) out[r * d + i] = x[t * d + i];
  }
}

template <typename T>
__global__ void combine_kernel(const T* expert_out, const int32_t* row, const float* gate, T* y,
                               int64_t d) {
  const int64_t t = blockIdx.x, r = row[t];
  const float g = r >= 0 ? gate[t] : 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    store(y, t * d + i, r >= 0 ? g * load(expert_out, r * d + i) : 0.0f);
}

template <typename T>
__global__ void dispatch_backward_kernel(const T* d_buffer, const int32_t* row, T* d_x, int64_t d) {
  const int64_t t = blockIdx.x, r = row[t];
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    store(d_x, t * d + i, r >= 0 ? load(d_buffer, r * d + i) : 0.0f);
}

// One block per token: its expert row's gradient, and the gate's as a block-wide dot.
template <typename T>
__global__ void combine_backward_kernel(const T* dy, const T* expert_out, const int32_t* row,
                                        const float* gate, T* d_expert_out, float* d_gate,
                                        int64_t d) {
  const int64_t t = blockIdx.x, r = row[t];
  if (r < 0) {
    if (threadIdx.x == 0) d_gate[t] = 0.0f;
    return;
  }
  const float g = gate[t];
  float dot = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float dyi = load(dy, t * d + i);
    store(d_expert_out, r * d + i, g * dyi);
    dot += dyi * load(expert_out, r * d + i);
  }
  dot = block_sum(dot);
  if (threadIdx.x == 0) d_gate[t] = dot;
}

}  // namespace

Tensor dispatch_backward(const Tensor& d_buffer, const Tensor& row) {
  const int64_t n = row.numel(), d = d_buffer.dim(1);
  Tensor d_x = Tensor::empty({n, d}, d_buffer.dtype(), d_buffer.device());
  if (n == 0) return d_x;
  DeviceContext& ctx = device_context(d_buffer);
  dispatch_storage(d_buffer.dtype(), "dispatch backward", [&](auto zero) {
    using T = decltype(zero);
    dispatch_backward_kernel<<<static_cast<unsigned>(n), 128, 0, ctx.stream>>>(
        static_cast<const T*>(d_buffer.raw()), static_cast<const int32_t*>(row.raw()),
        static_cast<T*>(d_x.raw()), d);
  });
  SW_CUDA_CHECK_LAUNCH("dispatch backward");
  return d_x;
}

void combine_backward(const Tensor& dy, const Tensor& expert_out, const Tensor& row,
                      const Tensor& gate, Tensor& d_expert_out, Tensor& d_gate) {
  check_dtype(gate, DType::f32, "combine backward: gate (the router runs in f32)");
  const int64_t n = row.numel(), d = expert_out.dim(1);
  // Rows no token holds (the padded layout's) keep a zero gradient.
  d_expert_out = Tensor::zeros(expert_out.shape(), expert_out.dtype(), expert_out.device());
  d_gate = Tensor::empty(row.shape(), DType::f32, expert_out.device());
  if (n == 0) return;
  DeviceContext& ctx = device_context(expert_out);
  dispatch_storage(expert_out.dtype(), "combine backward", [&](auto zero) {
    using T = decltype(zero);
    combine_backward_kernel<<<static_cast<unsigned>(n), 128, 0, ctx.stream>>>(
        static_cast<const T*>(dy.raw()), static_cast<const T*>(expert_out.raw()),
        static_cast<const int32_t*>(row.raw()), static_cast<const float*>(gate.raw()),
        static_cast<T*>(d_expert_out.raw()), static_cast<float*>(d_gate.raw()), d);
  });
  SW_CUDA_CHECK_LAUNCH("combine backward");
}

Tensor dispatch(const Tensor& x, const Tensor& row, int64_t kept) {
  const int64_t n = x.dim(0), d = x.dim(1);
  // Zeros: the padded layout's spare rows must be zeros, as the expert GEMMs and their
  // weight gradients read them (0 x garbage may be NaN).
  Tensor out = Tensor::zeros({kept, d}, x.dtype(), x.device());
  if (n == 0 || kept == 0) return out;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "dispatch", [&](auto zero) {
    using T = decltype(zero);
    const bool wide = (d * sizeof(T)) % 16 == 0;
    dispatch_kernel<<<static_cast<unsigned>(n), 128, 0, ctx.stream>>>(
        static_cast<const T*>(x.raw()), static_cast<const int32_t*>(row.raw()),
        static_cast<T*>(out.raw()), d, wide);
  });
  SW_CUDA_CHECK_LAUNCH("dispatch");
  return out;
}

Tensor combine(const Tensor& expert_out, const Tensor& row, const Tensor& gate) {
  check_dtype(gate, DType::f32, "combine: gate (the router runs in f32)");
  const int64_t n = row.numel(), d = expert_out.dim(1);
  Tensor y = Tensor::empty({n, d}, expert_out.dtype(), expert_out.device());
  if (n == 0) return y;
  DeviceContext& ctx = device_context(expert_out);
  dispatch_storage(expert_out.dtype(), "combine", [&](auto zero) {
    using T = decltype(zero);
    combine_kernel<<<static_cast<unsigned>(n), 128, 0, ctx.stream>>>(
        static_cast<const T*>(expert_out.raw()), static_cast<const int32_t*>(row.raw()),
        static_cast<const float*>(gate.raw()), static_cast<T*>(y.raw()), d);
  });
  SW_CUDA_CHECK_LAUNCH("combine");
  return y;
}

}  // namespace sw::kernels
