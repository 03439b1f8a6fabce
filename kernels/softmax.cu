#include <cmath>

#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/reduce.cuh"
#include "kernels/softmax.cuh"

namespace sw::kernels {
namespace {

template <typename T>
__global__ void softmax_kernel(T* x, int64_t n) {
  T* row = x + static_cast<int64_t>(blockIdx.x) * n;
  float m, sum;
  row_max_and_sum_exp(row, n, m, sum);
  const float inv = 1.0f / sum;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) store(row, j, expf(load(row, j) - m) * inv);
}

template <typename T>
__global__ void logsumexp_kernel(const T* x, T* out, int64_t n) {
  const T* row = x + static_cast<int64_t>(blockIdx.x) * n;
  float m, sum;
  row_max_and_sum_exp(row, n, m, sum);
  if (threadIdx.x == 0) store(out, blockIdx.x, m + logf(sum));
}

template <typename T>
__global__ void softmax_backward_kernel(const T* dp, const T* p, T* dx, int64_t n) {
  const int64_t base = static_cast<int64_t>(blockIdx.x) * n;
  float dot = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    dot += load(dp, base + j) * load(p, base + j);
  dot = block_sum(dot);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    store(dx, base + j, load(p, base + j) * (load(dp, base + j) - dot));
}

int64_t rows_of(const Tensor& x) { return x.dim(-1) ? x.numel() / x.dim(-1) : 0; }

}  // namespace

void softmax_(Tensor& x) {
  const int64_t n = x.dim(-1), rows = rows_of(x);
  if (rows == 0) return;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "softmax", [&](auto zero) {
    using T = decltype(zero);
    softmax_kernel<<<static_cast<unsigned>(rows), 256, 0, ctx.stream>>>(static_cast<T*>(x.raw()),
                                                                        n);
  });
  SW_CUDA_CHECK_LAUNCH("softmax");
}

Tensor logsumexp(const Tensor& x) {
  const int64_t n = x.dim(-1), rows = rows_of(x);
  Shape shape = x.shape();
  shape.pop_back();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  if (rows == 0) return out;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "logsumexp", [&](auto zero) {
    using T = decltype(zero);
    logsumexp_kernel<<<static_cast<unsigned>(rows), 256, 0, ctx.stream>>>(
        static_cast<const T*>(x.raw()), static_cast<T*>(out.raw()), n);
  });
  SW_CUDA_CHECK_LAUNCH("logsumexp");
  return out;
}

Tensor softmax_backward(const Tensor& dp, const Tensor& p) {
  const int64_t n = p.dim(-1), rows = rows_of(p);
  Tensor dx = Tensor::empty(p.shape(), p.dtype(), p.device());
  if (rows == 0) return dx;
  DeviceContext& ctx = device_context(p);
  dispatch_storage(p.dtype(), "softmax backward", [&](auto zero) {
    using T = decltype(zero);
    softmax_backward_kernel<<<static_cast<unsigned>(rows), 256, 0, ctx.stream>>>(
        static_cast<const T*>(dp.raw()), static_cast<const T*>(p.raw()), static_cast<T*>(dx.raw()),
        n);
  });
  SW_CUDA_CHECK_LAUNCH("softmax backward");
  return dx;
}

}  // namespace sw::kernels
