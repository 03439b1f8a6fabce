#include <cmath>

#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/elementwise.cuh"

namespace sw::kernels {
namespace {

__device__ inline float gelu_tanh(float x) {
  return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

template <typename In, typename Out>
__global__ void convert_kernel(const In* in, Out* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) store(out, i, load(in, i));
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

template <typename T>
__global__ void add_kernel(T* a, const T* b, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) store(a, i, load(a, i) + load(b, i));
}

template <typename T>
__global__ void scale_kernel(T* a, float s, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) store(a, i, load(a, i) * s);
}

__global__ void split_bf16x3_kernel(const float* w, __nv_bfloat16* hi, __nv_bfloat16* mid,
                                    __nv_bfloat16* lo, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = w[i];
  hi[i] = __float2bfloat16(v);
  const float r = v - __bfloat162float(hi[i]);
  mid[i] = __float2bfloat16(r);
  lo[i] = __float2bfloat16(r - __bfloat162float(mid[i]));
}

struct Relu {
  __device__ float operator()(float v) const { return v > 0.0f ? v : 0.0f; }
};
struct Gelu {
  __device__ float operator()(float v) const { return gelu_tanh(v); }
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

void convert(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(src);
  const DType from = src.dtype(), to = dst.dtype();
  const unsigned blocks = blocks_for(n);
  if (from == DType::f32 && to == DType::bf16)
    convert_kernel<<<blocks, kThreads, 0, ctx.stream>>>(static_cast<const float*>(src.raw()),
                                                        static_cast<__nv_bfloat16*>(dst.raw()), n);
  else if (from == DType::bf16 && to == DType::f32)
    convert_kernel<<<blocks, kThreads, 0, ctx.stream>>>(
        static_cast<const __nv_bfloat16*>(src.raw()), static_cast<float*>(dst.raw()), n);
  else if (from == DType::f32 && to == DType::f64)
    convert_kernel<<<blocks, kThreads, 0, ctx.stream>>>(static_cast<const float*>(src.raw()),
                                                        static_cast<double*>(dst.raw()), n);
  else if (from == DType::f64 && to == DType::f32)
    convert_kernel<<<blocks, kThreads, 0, ctx.stream>>>(static_cast<const double*>(src.raw()),
                                                        static_cast<float*>(dst.raw()), n);
  else
    throw Error(Status::kUnsupported, std::string("convert: ") + dtype_name(from) + " to " +
                                          dtype_name(to) + " is not supported on cuda");
  SW_CUDA_CHECK_LAUNCH("convert");
}

void split_bf16x3(const Tensor& w, Tensor& hi, Tensor& mid, Tensor& lo) {
  check_dtype(w, DType::f32, "split_bf16x3");
  const int64_t n = w.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(w);
  split_bf16x3_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
      static_cast<const float*>(w.raw()), static_cast<__nv_bfloat16*>(hi.raw()),
      static_cast<__nv_bfloat16*>(mid.raw()), static_cast<__nv_bfloat16*>(lo.raw()), n);
  SW_CUDA_CHECK_LAUNCH("split_bf16x3");
}

Tensor relu(const Tensor& x) { return map(x, "relu", Relu{}); }
Tensor gelu(const Tensor& x) { return map(x, "gelu", Gelu{}); }

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

void add_(Tensor& a, const Tensor& b) {
  const int64_t n = a.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(a);
  dispatch_storage(a.dtype(), "add", [&](auto zero) {
    using T = decltype(zero);
    add_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(static_cast<T*>(a.raw()),
                                                           static_cast<const T*>(b.raw()), n);
  });
  SW_CUDA_CHECK_LAUNCH("add");
}

void scale_(Tensor& a, double s) {
  const int64_t n = a.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(a);
  dispatch_storage(a.dtype(), "scale", [&](auto zero) {
    using T = decltype(zero);
    scale_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(static_cast<T*>(a.raw()),
                                                             static_cast<float>(s), n);
  });
  SW_CUDA_CHECK_LAUNCH("scale");
}

}  // namespace sw::kernels
