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

// dx = r * (w * dy) - x * r^3 / d * sum_j(w_j * dy_j * x_j), r = inv_rms[row].
template <typename T>
__global__ void rms_norm_dx_kernel(const T* dy, const T* x, const T* w, const float* inv_rms, T* dx,
                                   int64_t d) {
  const int64_t r = blockIdx.x;
  float dot = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    dot += load(w, i) * load(dy, r * d + i) * load(x, r * d + i);
  const float s = inv_rms[r];
  const float coef = s * s * s * block_sum(dot) / static_cast<float>(d);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    store(dx, r * d + i, s * load(w, i) * load(dy, r * d + i) - load(x, r * d + i) * coef);
}

constexpr int64_t kRowsPerChunk = 128;

// Stage 1: partial[chunk, i] = sum over the chunk's rows, in order, of dy * x * inv_rms.
template <typename T>
__global__ void rms_norm_dw_partial_kernel(const T* dy, const T* x, const float* inv_rms,
                                           float* partial, int64_t rows, int64_t d) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t chunk = blockIdx.y, first = chunk * kRowsPerChunk;
  if (i >= d) return;
  float sum = 0.0f;
  for (int64_t r = first; r < rows && r < first + kRowsPerChunk; ++r)
    sum += load(dy, r * d + i) * load(x, r * d + i) * inv_rms[r];
  partial[chunk * d + i] = sum;
}

// Stage 2: dweight[i] += the chunks' partial sums, in chunk order.
template <typename G>
__global__ void rms_norm_dw_sum_kernel(const float* partial, G* dweight, int64_t chunks,
                                       int64_t d) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= d) return;
  float sum = 0.0f;
  for (int64_t c = 0; c < chunks; ++c) sum += partial[c * d + i];
  store(dweight, i, load(dweight, i) + sum);
}

}  // namespace

Tensor rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& inv_rms, Tensor& dweight) {
  SW_CHECK_ARG(inv_rms.dtype() == DType::f32,
               "rms_norm backward: inv_rms must be f32 on a GPU, got ", inv_rms.str());
  const int64_t d = x.dim(-1), rows = d ? x.numel() / d : 0;
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (rows == 0) return dx;
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  Tensor partial = Tensor::empty({chunks, d}, DType::f32, x.device());
  DeviceContext& ctx = device_context(x);
  const unsigned column_blocks = static_cast<unsigned>((d + kThreads - 1) / kThreads);
  dispatch_data_and_gradient(
      x.dtype(), dweight.dtype(), "rms_norm backward", [&](auto zero, auto grad_zero) {
        using T = decltype(zero);
        using G = decltype(grad_zero);
        const T* pdy = static_cast<const T*>(dy.raw());
        const T* px = static_cast<const T*>(x.raw());
        const float* pr = static_cast<const float*>(inv_rms.raw());
        rms_norm_dx_kernel<<<static_cast<unsigned>(rows), 256, 0, ctx.stream>>>(
            pdy, px, static_cast<const T*>(weight.raw()), pr, static_cast<T*>(dx.raw()), d);
        rms_norm_dw_partial_kernel<<<dim3(column_blocks, static_cast<unsigned>(chunks)), kThreads,
                                     0, ctx.stream>>>(pdy, px, pr,
                                                      static_cast<float*>(partial.raw()), rows, d);
        rms_norm_dw_sum_kernel<<<column_blocks, kThreads, 0, ctx.stream>>>(
            static_cast<const float*>(partial.raw()), static_cast<G*>(dweight.raw()), chunks, d);
      });
  SW_CUDA_CHECK_LAUNCH("rms_norm backward");
  return dx;
}

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
