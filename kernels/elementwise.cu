#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/elementwise.cuh"

namespace sw::kernels {
namespace {

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

__global__ void round_to_bf16_kernel(float* a, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) a[i] = __bfloat162float(__float2bfloat16(a[i]));  // round to nearest even
}

}  // namespace

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

void round_to_bf16_(Tensor& a) {
  const int64_t n = a.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(a);
  round_to_bf16_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(static_cast<float*>(a.raw()), n);
  SW_CUDA_CHECK_LAUNCH("round_to_bf16");
}

}  // namespace sw::kernels
