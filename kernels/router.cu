#include <cmath>

#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/gemm.cuh"
#include "kernels/router.cuh"

namespace sw::kernels {
namespace {

__global__ void jitter_kernel(const float* x, float* out, int64_t n, RandomStream stream,
                              double eps) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = x[i] * static_cast<float>(1.0 - eps + 2.0 * eps * stream.uniform(i));
}

// Softmax and top-1 of one token's logits row, by one warp: max and argmax (ties to the
// lowest index), then the probabilities; lane 0 writes the index and gate.
__device__ void softmax_top1_row(const float* row, float* probs, int32_t* index, float* gate,
                                 int64_t experts, int lane) {
  float best = -INFINITY;
  int best_index = 0x7fffffff;
  for (int64_t e = lane; e < experts; e += 32) {
    const float v = row[e];
    if (v > best) {  // lanes visit increasing e: the first maximum wins within a lane
      best = v;
      best_index = static_cast<int>(e);
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, best, offset);
    const int i = __shfl_xor_sync(0xffffffffu, best_index, offset);
    if (v > best || (v == best && i < best_index)) {
      best = v;
      best_index = i;
    }
  }
  float sum = 0.0f;
  for (int64_t e = lane; e < experts; e += 32) sum += expf(row[e] - best);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  const float inv = 1.0f / sum;
  for (int64_t e = lane; e < experts; e += 32) probs[e] = expf(row[e] - best) * inv;
  if (lane == 0) {
    *index = best_index;
    *gate = inv;  // exp(best - best) / sum
  }
}

// One warp per token.
__global__ void softmax_top1_kernel(const float* logits, float* probs, int32_t* index, float* gate,
                                    int64_t n, int64_t experts) {
  const int64_t token = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (token >= n) return;
  softmax_top1_row(logits + token * experts, probs + token * experts, index + token, gate + token,
                   experts, threadIdx.x % 32);
}

// One warp per token: each logit is a warp-wide f32 dot product of the token's row (read
// from L1 after the first expert) with the expert's f32 weight row.
template <typename T>
__global__ void fused_router_kernel(const T* x, const float* weight, float* logits, float* probs,
                                    int32_t* index, float* gate, int64_t n, int64_t d,
                                    int64_t experts) {
  const int64_t token = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (token >= n) return;
  const T* row = x + token * d;
  float* out = logits + token * experts;
  for (int64_t e = 0; e < experts; ++e) {
    const float* w = weight + e * d;
    float acc = 0.0f;
    for (int64_t j = lane; j < d; j += 32) acc += load(row, j) * w[j];
    for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    if (lane == e % 32) out[e] = acc;
  }
  __syncwarp();  // the row's logits, written by several lanes, are visible to the warp
  softmax_top1_row(out, probs + token * experts, index + token, gate + token, experts, lane);
}

}  // namespace

void jitter(const Tensor& x, Tensor& out, const RandomStream& stream, double eps) {
  check_dtype(x, DType::f32, "router jitter (the router runs in f32)");
  const int64_t n = x.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(x);
  jitter_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
      static_cast<const float*>(x.raw()), static_cast<float*>(out.raw()), n, stream, eps);
  SW_CUDA_CHECK_LAUNCH("jitter");
}

void softmax_top1(const Tensor& logits, Tensor& probs, Tensor& expert_index, Tensor& gate) {
  check_dtype(logits, DType::f32, "router (the router runs in f32)");
  const int64_t n = logits.dim(0), experts = logits.dim(1);
  if (n == 0) return;
  DeviceContext& ctx = device_context(logits);
  softmax_top1_kernel<<<blocks_for(n * 32), kThreads, 0, ctx.stream>>>(
      static_cast<const float*>(logits.raw()), static_cast<float*>(probs.raw()),
      static_cast<int32_t*>(expert_index.raw()), static_cast<float*>(gate.raw()), n, experts);
  SW_CUDA_CHECK_LAUNCH("softmax_top1");
}

void fused_router(const Tensor& x, const Tensor& weight, Tensor& logits, Tensor& probs,
                  Tensor& expert_index, Tensor& gate) {
  check_dtype(weight, DType::f32, "router weight (the router runs in f32)");
  const int64_t n = x.dim(0), d = x.dim(1), experts = weight.dim(0);
  if (n == 0) return;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "router", [&](auto zero) {
    using T = decltype(zero);
    fused_router_kernel<<<blocks_for(n * 32), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(x.raw()), static_cast<const float*>(weight.raw()),
        static_cast<float*>(logits.raw()), static_cast<float*>(probs.raw()),
        static_cast<int32_t*>(expert_index.raw()), static_cast<float*>(gate.raw()), n, d, experts);
  });
  SW_CUDA_CHECK_LAUNCH("fused_router");
}

// The router in f32 whatever the model's dtype (docs/MATH.md §2): one fused pass over x up to
// kFusedRouterMaxExperts experts, an f32 cuBLAS GEMM and a softmax kernel above.
ops::RouterOutput route(const Tensor& x, const Tensor& weight, const ops::RouterJitter& noise,
                        Tensor* jittered_x) {
  const int64_t n = x.dim(0), experts = weight.dim(0);
  const Tensor w = weight.dtype() == DType::f32 ? weight : weight.to(DType::f32);
  ops::RouterOutput r;
  r.logits = Tensor::empty({n, experts}, DType::f32, x.device());
  r.probs = Tensor::empty({n, experts}, DType::f32, x.device());
  r.expert_index = Tensor::empty({n, 1}, DType::i32, x.device());
  r.gate = Tensor::empty({n, 1}, DType::f32, x.device());
  if (!noise.active() && x.dtype() == DType::bf16) {
    // bf16 activations are exact in bf16: f32-precision logits on the tensor cores.
    if (jittered_x) *jittered_x = x;
    matmul_bf16_by_f32(x, w, r.logits);
    softmax_top1(r.logits, r.probs, r.expert_index, r.gate);
    return r;
  }
  if (!noise.active() && experts <= kFusedRouterMaxExperts) {
    if (jittered_x) *jittered_x = x;
    fused_router(x, w, r.logits, r.probs, r.expert_index, r.gate);
    return r;
  }
  Tensor input = x.dtype() == DType::f32 ? x : x.to(DType::f32);
  if (noise.active()) {
    Tensor out = Tensor::empty(input.shape(), DType::f32, input.device());
    jitter(input, out, noise.stream, noise.eps);
    input = out;
  }
  if (jittered_x) *jittered_x = x.dtype() == DType::f32 ? input : input.to(x.dtype());
  if (experts <= kFusedRouterMaxExperts) {
    fused_router(input, w, r.logits, r.probs, r.expert_index, r.gate);
  } else {
    matmul(input, false, w, true, r.logits, 1.0, 0.0);
    softmax_top1(r.logits, r.probs, r.expert_index, r.gate);
  }
  return r;
}

}  // namespace sw::kernels
