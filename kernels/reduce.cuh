// Block-wide reductions for the kernels that give one block to a row (norm, attention
// softmax, loss), and fixed-order sums over whole tensors (gradient norm, optimizers).
#pragma once

#include <cuda_runtime.h>

#include <cmath>

#include "kernels/cuda_types.cuh"

namespace sw::kernels {

// Block-wide sum of one float per thread (blockDim.x a multiple of 32, at most 1024).
__device__ inline float block_sum(float v) {
  __shared__ float partial[32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? partial[lane] : 0.0f;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float block_max(float v) {
  __shared__ float partial[32];
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? partial[lane] : -INFINITY;
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// A row's max and sum of exp(x - max), on every thread of the block (softmax, loss).
template <typename T>
__device__ void row_max_and_sum_exp(const T* row, int64_t n, float& m, float& sum) {
  m = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, load(row, j));
  m = block_max(m);
  sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += expf(load(row, j) - m);
  sum = block_sum(sum);
}

// Block-wide sum of one double per thread (blockDim.x a multiple of 32, at most 1024).
__device__ inline double block_sum_f64(double v) {
  __shared__ double partial[32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? partial[lane] : 0.0;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sums that are the same bits run to run: block b adds f(i) over its chunk of kSumChunk
// elements (fixed thread strides, a fixed tree) into partial[b]; add_in_order then adds
// the partials one after another. Launch with chunks_for(n) blocks of kThreads.
constexpr int64_t kSumChunk = 16384;
inline unsigned chunks_for(int64_t n) {
  return static_cast<unsigned>((n + kSumChunk - 1) / kSumChunk);
}

template <typename F>
__global__ void chunk_sums_kernel(F f, int64_t n, double* partial) {
  const int64_t lo = static_cast<int64_t>(blockIdx.x) * kSumChunk;
  const int64_t hi = lo + kSumChunk < n ? lo + kSumChunk : n;
  double sum = 0.0;
  for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) sum += f(i);
  sum = block_sum_f64(sum);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

// The square of element i of x, in f64.
template <typename T>
struct SquareOf {
  const T* x;
  __device__ double operator()(int64_t i) const {
    const double v = load(x, i);
    return v * v;
  }
};

// *out = partial[0] + partial[1] + ... + partial[count - 1], in that order (reduce.cu).
void add_in_order(const double* partial, int64_t count, double* out, cudaStream_t stream);

}  // namespace sw::kernels
