#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/norm.cuh"
#include "kernels/reduce.cuh"

namespace sw::kernels {
namespace {

template <typename T>
__global__ void rms_norm_kernel(const T* x, const T* w, T* y, float* inv_rms, int64_t d,
                                float eps) {
  const int64_t r = blockIdx.x;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = load(x, r * d + i);
    sum_sq += v * v;
  }
  const float scale = rsqrtf(block_sum(sum_sq) / static_cast<float>(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    store(y, r * d + i, load(w, i) * (load(x, r * d + i) * scale));
  if (inv_rms && threadIdx.x == 0) inv_rms[r] = scale;
}

}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor* inv_rms) {
  const int64_t d = x.dim(-1), rows = d ? x.numel() / d : 0;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (inv_rms) *inv_rms = Tensor::empty({rows}, DType::f32, x.device());
  if (rows == 0) return y;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "rms_norm", [&](auto zero) {
    using T = decltype(zero);
    rms_norm_kernel<<<static_cast<unsigned>(rows), 256, 0, ctx.stream>>>(
        static_cast<const T*>(x.raw()), static_cast<const T*>(weight.raw()),
        static_cast<T*>(y.raw()), inv_rms ? static_cast<float*>(inv_rms->raw()) : nullptr, d,
        static_cast<float>(eps));
  });
  SW_CUDA_CHECK_LAUNCH("rms_norm");
  return y;
}

}  // namespace sw::kernels
