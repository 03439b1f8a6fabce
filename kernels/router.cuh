// The Switch router on CUDA behind core/ops/router.h: the forward jitter, softmax and
// top-1, the fused router that does both from x in one pass, and the backward. The router
// always runs in f32 (docs/MATH.md §2).
#pragma once

#include <cstdint>

#include "core/ops/router.h"
#include "core/tensor/philox.h"
#include "core/tensor/tensor.h"

namespace sw::kernels {

// out = x * U(1 - eps, 1 + eps) elementwise, drawn from `stream` as on the cpu.
void jitter(const Tensor& x, Tensor& out, const RandomStream& stream, double eps);

// logits f32 [N, E] -> probs [N, E], expert index i32 [N] (ties to the lowest), gate [N]
// (core/ops views both as [N, 1]).
void softmax_top1(const Tensor& logits, Tensor& probs, Tensor& expert_index, Tensor& gate);

// The whole router in one pass over x (f32 or bf16 [N, d]) with an f32 weight [E, d]:
// f32 logits, then softmax_top1's outputs. Reads x once instead of converting it and
// running a skinny f32 GEMM; each warp re-reads every expert's weight row, so it pays
// only for few experts.
constexpr int64_t kFusedRouterMaxExperts = 8;  // measured on H200: faster at 8, slower at 32
void fused_router(const Tensor& x, const Tensor& weight, Tensor& logits, Tensor& probs,
                  Tensor& expert_index, Tensor& gate);

// ops::route on the GPU: f32 logits and probs, expert index i32 [N, 1] and f32 gate [N, 1].
ops::RouterOutput route(const Tensor& x, const Tensor& weight, const ops::RouterJitter& jitter,
                        Tensor* jittered_x);

// ops::route_with_capacity on the GPU, in one of two ways:
// - kOneKernel: a block per routing group, whose warps route the group's tokens (softmax
//   and top-1, and for up to kFusedRouterMaxExperts experts the logits from x), then
//   whose first warp counts the capacity positions; place_tokens lays them out.
// - kApart: route, then assign_capacity (a warp per token for the softmax, then a warp
//   per group).
// fixed_rows > 0: the padded layout of that many rows per expert, counts left on the
// device (place_tokens).
// kAuto takes one kernel when there are at least as many groups as multiprocessors (fewer
// blocks would leave the GPU mostly idle) and up to 6144 experts (the shared counters),
// else the kernels apart; tests/bench/switch_ffn_gpu_bench.cc times both.
enum class RoutingKernels { kAuto, kOneKernel, kApart };
ops::RoutedTokens route_with_capacity(const Tensor& x, const Tensor& weight,
                                      const ops::RouterJitter& jitter, Tensor* jittered_x,
                                      int64_t group_size, int64_t capacity, int64_t fixed_rows = 0,
                                      RoutingKernels how = RoutingKernels::kAuto);

// ops::router_backward in f32: the first-choice counts per routing group on the device,
// then one block per token (gate gradient, load-balancing and z-loss terms, softmax).
Tensor router_backward(const ops::RouterOutput& r, const Tensor& d_gate,
                       const ops::RouterLossGradients& losses);

// ops::jitter_backward_: the gradient times the forward's noise, in place (f32).
void jitter_backward_(Tensor& d_input, const ops::RouterJitter& jitter);

}  // namespace sw::kernels
