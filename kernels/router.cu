#include <cmath>
#include <type_traits>

#include "kernels/capacity.cuh"
#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/gemm.cuh"
#include "kernels/reduce.cuh"
#include "kernels/router.cuh"
#include "kernels/routing_rows.cuh"

namespace sw::kernels {
namespace {

__global__ void jitter_kernel(const float* x, float* out, int64_t n, RandomStream stream,
                              double eps) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = x[i] * static_cast<float>(1.0 - eps + 2.0 * eps * stream.uniform(i));
}

// One warp per token.
__global__ void softmax_top1_kernel(const float* logits, float* probs, int32_t* index, float* gate,
                                    int64_t n, int64_t experts) {
  const int64_t token = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (token >= n) return;
  softmax_top1_row(logits + token * experts, probs + token * experts, index + token, gate + token,
                   experts, threadIdx.x % 32);
}

// One warp per token: the whole router from x (routing_rows.cuh).
template <typename T>
__global__ void fused_router_kernel(const T* x, const float* weight, float* logits, float* probs,
                                    int32_t* index, float* gate, int64_t n, int64_t d,
                                    int64_t experts) {
  const int64_t token = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (token >= n) return;
  router_row(x + token * d, weight, logits + token * experts, probs + token * experts,
             index + token, gate + token, d, experts, static_cast<int>(threadIdx.x % 32));
}

// First-choice counts per (routing group, expert) for the load-balancing gradient:
// integer atomics, so the counts do not depend on the order.
__global__ void group_counts_kernel(const int32_t* index, int32_t* counts, int64_t n, int64_t k,
                                    int64_t group_size, int64_t experts) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n) atomicAdd(&counts[(t / group_size) * experts + index[t * k]], 1);
}

// One block per token: d_probs = the gate gradients at the chosen experts plus the
// load-balancing term aux * E * f_ge / (group_size * groups), through the softmax
// (p * (dp - sum dp p)), plus the z-loss's z * 2 * lse / N * p.
__global__ void router_backward_kernel(const float* logits, const float* probs,
                                       const int32_t* index, const float* d_gate,
                                       const int32_t* counts, float* d_logits, int64_t n,
                                       int64_t experts, int64_t k, double aux, int64_t group_size,
                                       double z) {
  const int64_t t = blockIdx.x;
  const float* p = probs + t * experts;
  const int64_t groups = group_size > 0 ? n / group_size : 1;
  auto d_prob = [&](int64_t e) {
    float dp = 0.0f;
    for (int64_t j = 0; j < k; ++j)
      if (index[t * k + j] == e) dp += d_gate[t * k + j];
    if (aux != 0.0) {
      const double f = counts[(t / group_size) * experts + e] / static_cast<double>(group_size);
      dp += static_cast<float>(aux * static_cast<double>(experts) * f /
                               static_cast<double>(group_size * groups));
    }
    return dp;
  };
  float dot = 0.0f;
  for (int64_t e = threadIdx.x; e < experts; e += blockDim.x) dot += d_prob(e) * p[e];
  dot = block_sum(dot);
  float z_scale = 0.0f;
  if (z != 0.0) {
    float m, sum;
    row_max_and_sum_exp(logits + t * experts, experts, m, sum);
    z_scale =
        static_cast<float>(z * 2.0 * static_cast<double>(m + logf(sum)) / static_cast<double>(n));
  }
  for (int64_t e = threadIdx.x; e < experts; e += blockDim.x)
    d_logits[t * experts + e] = p[e] * (d_prob(e) - dot) + z_scale * p[e];
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

namespace {

// The router's outputs, allocated, and what its softmax reads: in f32 whatever the model's
// dtype (docs/MATH.md §2). Either r.logits is computed here (an f32 cuBLAS GEMM, or the
// split-bf16 one for bf16 activations) and the returned tensor is undefined, or, up to
// kFusedRouterMaxExperts experts, the (jittered) input is returned for a kernel that
// computes the logits itself in its one pass over x.
Tensor router_logits(const Tensor& x, const Tensor& w, const ops::RouterJitter& noise,
                     Tensor* jittered_x, ops::RouterOutput& r) {
  const int64_t n = x.dim(0), experts = w.dim(0);
  r.logits = Tensor::empty({n, experts}, DType::f32, x.device());
  r.probs = Tensor::empty({n, experts}, DType::f32, x.device());
  r.expert_index = Tensor::empty({n, 1}, DType::i32, x.device());
  r.gate = Tensor::empty({n, 1}, DType::f32, x.device());
  if (!noise.active() && x.dtype() == DType::bf16) {
    // bf16 activations are exact in bf16: f32-precision logits on the tensor cores.
    if (jittered_x) *jittered_x = x;
    matmul_bf16_by_f32(x, w, r.logits);
    return Tensor();
  }
  if (!noise.active() && experts <= kFusedRouterMaxExperts) {
    if (jittered_x) *jittered_x = x;
    return x;
  }
  Tensor input = x.dtype() == DType::f32 ? x : x.to(DType::f32);
  if (noise.active()) {
    Tensor out = Tensor::empty(input.shape(), DType::f32, input.device());
    jitter(input, out, noise.stream, noise.eps);
    input = out;
  }
  if (jittered_x) *jittered_x = x.dtype() == DType::f32 ? input : input.to(x.dtype());
  if (experts <= kFusedRouterMaxExperts) return input;
  matmul(input, false, w, true, r.logits, 1.0, 0.0);
  return Tensor();
}

// One block per routing group: its warps route the group's tokens (from the logits, or
// from x when kFromX), then its first warp walks the group in token order for the
// capacity positions.
template <typename T, bool kFromX>
__global__ void route_and_count_kernel(const T* x, const float* weight, float* logits, float* probs,
                                       int32_t* index, float* gate, int32_t* position,
                                       int64_t* kept, int64_t groups, int64_t group_size, int64_t d,
                                       int64_t experts, int64_t capacity) {
  extern __shared__ int64_t counts[];  // [experts]
  const int64_t g = blockIdx.x;
  const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
  for (int64_t t = g * group_size + warp; t < (g + 1) * group_size; t += blockDim.x / 32) {
    if constexpr (kFromX)
      router_row(x + t * d, weight, logits + t * experts, probs + t * experts, index + t, gate + t,
                 d, experts, lane);
    else
      softmax_top1_row(logits + t * experts, probs + t * experts, index + t, gate + t, experts,
                       lane);
  }
  __syncthreads();  // the group's choices, written by every warp, seen by the first
  if (warp == 0)
    count_group_positions(index, position, kept, counts, g, groups, group_size, experts, capacity,
                          static_cast<unsigned>(lane));
}

}  // namespace

ops::RouterOutput route(const Tensor& x, const Tensor& weight, const ops::RouterJitter& noise,
                        Tensor* jittered_x) {
  const Tensor w = weight.dtype() == DType::f32 ? weight : weight.to(DType::f32);
  ops::RouterOutput r;
  const Tensor input = router_logits(x, w, noise, jittered_x, r);
  if (input.defined())
    fused_router(input, w, r.logits, r.probs, r.expert_index, r.gate);
  else
    softmax_top1(r.logits, r.probs, r.expert_index, r.gate);
  return r;
}

ops::RoutedTokens route_with_capacity(const Tensor& x, const Tensor& weight,
                                      const ops::RouterJitter& noise, Tensor* jittered_x,
                                      int64_t group_size, int64_t capacity, int64_t fixed_rows,
                                      RoutingKernels how) {
  const int64_t n = x.dim(0), experts = weight.dim(0), groups = n / group_size;
  DeviceContext& ctx = device_context(x);
  const size_t shared_bytes = static_cast<size_t>(experts) * sizeof(int64_t);
  SW_CHECK(how != RoutingKernels::kOneKernel || shared_bytes <= 48 * 1024, Status::kUnsupported,
           "route_with_capacity: ", experts,
           " experts exceed the 6144 the one kernel's shared counters hold");
  if (how == RoutingKernels::kAuto) {
    int sms = 0;
    SW_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx.index));
    how = groups >= sms && shared_bytes <= 48 * 1024 ? RoutingKernels::kOneKernel
                                                     : RoutingKernels::kApart;
  }
  ops::RoutedTokens out;
  if (n == 0 || how == RoutingKernels::kApart) {
    out.router = kernels::route(x, weight, noise, jittered_x);
    out.assignment = kernels::assign_capacity(out.router.expert_index, experts, group_size,
                                              capacity, fixed_rows);
    return out;
  }
  const Tensor w = weight.dtype() == DType::f32 ? weight : weight.to(DType::f32);
  ops::RouterOutput& r = out.router;
  const Tensor input = router_logits(x, w, noise, jittered_x, r);
  Tensor position = Tensor::empty({n}, DType::i32, x.device());
  Tensor kept = Tensor::empty({experts * groups}, DType::i64, x.device());
  constexpr unsigned kBlock = 512;  // 16 warps share each group's rows
  auto launch = [&](auto zero, auto from_x) {
    using T = decltype(zero);
    route_and_count_kernel<T, decltype(from_x)::value>
        <<<static_cast<unsigned>(groups), kBlock, shared_bytes, ctx.stream>>>(
            input.defined() ? static_cast<const T*>(input.raw()) : nullptr,
            static_cast<const float*>(w.raw()), static_cast<float*>(r.logits.raw()),
            static_cast<float*>(r.probs.raw()), static_cast<int32_t*>(r.expert_index.raw()),
            static_cast<float*>(r.gate.raw()), static_cast<int32_t*>(position.raw()),
            static_cast<int64_t*>(kept.raw()), groups, group_size, x.dim(1), experts, capacity);
  };
  if (input.defined())
    dispatch_storage(input.dtype(), "route_with_capacity",
                     [&](auto zero) { launch(zero, std::true_type{}); });
  else
    launch(float{}, std::false_type{});
  SW_CUDA_CHECK_LAUNCH("route_and_count");
  out.assignment =
      place_tokens(r.expert_index, position, kept, experts, group_size, capacity, fixed_rows);
  return out;
}

Tensor router_backward(const ops::RouterOutput& r, const Tensor& d_gate,
                       const ops::RouterLossGradients& losses) {
  check_dtype(r.probs, DType::f32, "router backward (the router runs in f32)");
  check_dtype(r.logits, DType::f32, "router backward: logits");
  const int64_t n = r.probs.dim(0), experts = r.num_experts(), k = r.top_k();
  Tensor d_logits = Tensor::zeros({n, experts}, DType::f32, r.probs.device());
  if (n == 0) return d_logits;
  DeviceContext& ctx = device_context(r.probs);
  const int64_t group_size = losses.aux != 0 ? losses.group_size : 0;
  Tensor counts;
  if (group_size > 0) {
    counts = Tensor::zeros({n / group_size, experts}, DType::i32, r.probs.device());
    group_counts_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
        static_cast<const int32_t*>(r.expert_index.raw()), static_cast<int32_t*>(counts.raw()), n,
        k, group_size, experts);
    SW_CUDA_CHECK_LAUNCH("group_counts");
  }
  router_backward_kernel<<<static_cast<unsigned>(n), 128, 0, ctx.stream>>>(
      static_cast<const float*>(r.logits.raw()), static_cast<const float*>(r.probs.raw()),
      static_cast<const int32_t*>(r.expert_index.raw()), static_cast<const float*>(d_gate.raw()),
      group_size > 0 ? static_cast<const int32_t*>(counts.raw()) : nullptr,
      static_cast<float*>(d_logits.raw()), n, experts, k, group_size > 0 ? losses.aux : 0.0,
      group_size, losses.z);
  SW_CUDA_CHECK_LAUNCH("router_backward");
  return d_logits;
}

void jitter_backward_(Tensor& d_input, const ops::RouterJitter& noise) {
  jitter(d_input, d_input, noise.stream, noise.eps);  // elementwise: in place is safe
}

}  // namespace sw::kernels
