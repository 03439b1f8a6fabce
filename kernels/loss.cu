#include <cmath>

#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/loss.cuh"
#include "kernels/reduce.cuh"

namespace sw::kernels {
namespace {

template <typename T>
__global__ void cross_entropy_kernel(const T* logits, const int32_t* labels, float* loss,
                                     int64_t vocab, int32_t ignore_index) {
  const int64_t r = blockIdx.x;
  const int32_t label = labels[r];
  if (label == ignore_index) {
    if (threadIdx.x == 0) loss[r] = 0.0f;
    return;
  }
  float m, sum;
  row_max_and_sum_exp(logits + r * vocab, vocab, m, sum);
  if (threadIdx.x == 0) loss[r] = m + logf(sum) - load(logits, r * vocab + label);
}

template <typename T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int32_t* labels, T* grad,
                                              int64_t vocab, float factor, int32_t ignore_index) {
  const int64_t r = blockIdx.x;
  const int32_t label = labels[r];
  if (label == ignore_index) {
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) store(grad, r * vocab + j, 0.0f);
    return;
  }
  float m, sum;
  row_max_and_sum_exp(logits + r * vocab, vocab, m, sum);
  const float inv_sum = 1.0f / sum;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float p = expf(load(logits, r * vocab + j) - m) * inv_sum;
    store(grad, r * vocab + j, (p - (j == label ? 1.0f : 0.0f)) * factor);
  }
}

}  // namespace

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double factor,
                              int32_t ignore_index) {
  const int64_t n = logits.dim(0), vocab = logits.dim(1);
  Tensor grad = Tensor::empty(logits.shape(), logits.dtype(), logits.device());
  if (n == 0) return grad;
  DeviceContext& ctx = device_context(logits);
  dispatch_storage(logits.dtype(), "cross_entropy backward", [&](auto zero) {
    using T = decltype(zero);
    cross_entropy_backward_kernel<<<static_cast<unsigned>(n), 256, 0, ctx.stream>>>(
        static_cast<const T*>(logits.raw()), static_cast<const int32_t*>(labels.raw()),
        static_cast<T*>(grad.raw()), vocab, static_cast<float>(factor), ignore_index);
  });
  SW_CUDA_CHECK_LAUNCH("cross_entropy backward");
  return grad;
}

Tensor cross_entropy_rows(const Tensor& logits, const Tensor& labels, int32_t ignore_index) {
  const int64_t n = logits.dim(0), vocab = logits.dim(1);
  Tensor loss = Tensor::empty({n}, DType::f32, logits.device());
  if (n == 0) return loss;
  DeviceContext& ctx = device_context(logits);
  dispatch_storage(logits.dtype(), "cross_entropy", [&](auto zero) {
    using T = decltype(zero);
    cross_entropy_kernel<<<static_cast<unsigned>(n), 256, 0, ctx.stream>>>(
        static_cast<const T*>(logits.raw()), static_cast<const int32_t*>(labels.raw()),
        static_cast<float*>(loss.raw()), vocab, ignore_index);
  });
  SW_CUDA_CHECK_LAUNCH("cross_entropy");
  return loss;
}

}  // namespace sw::kernels
