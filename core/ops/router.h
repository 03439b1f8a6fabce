// The Switch router (docs/MATH.md §2): logits = x W_r^T, probs = softmax(logits), each token's
// top-k experts (k = 1, the Switch choice; k = 2, the top-2 MoE baseline) and their gates,
// all in f32 or wider whatever the model's dtype ("selective precision"), with optional
// multiplicative jitter on the input.
// Its backward folds in the gradients of the layer's own loss terms (docs/MATH.md §3: the
// per-layer load-balancing loss and the z-loss), so the model never touches router maths.
#pragma once

#include <cstdint>

#include "core/ops/capacity.h"
#include "core/tensor/philox.h"
#include "core/tensor/tensor.h"

namespace sw::ops {

struct RouterOutput {
  Tensor logits;        // [N, E], f32 (f64 for gradient checks on the cpu)
  Tensor probs;         // [N, E], softmax of logits
  Tensor expert_index;  // i32 [N, k]: the chosen experts, best first; ties to the lowest index
  Tensor gate;          // [N, k]: probs[n, expert_index[n, j]] (over their sum if normalized)
  bool normalized_gates = false;  // k > 1: each gate divided by the sum of the k chosen probs
  int64_t num_experts() const { return probs.dim(1); }
  int64_t top_k() const { return expert_index.dim(1); }
};

struct RouterJitter {
  double eps = 0.0;  // router input multiplied by U(1 - eps, 1 + eps); 0 = off
  RandomStream stream;
  bool active() const { return eps > 0.0; }
};

// x [N, d] router input, weight [E, d] (HF `router.classifier.weight`) on x's device. On
// the cpu the router runs in x's dtype (the model keeps it at f32 or wider); on a GPU in
// f32 whatever x's dtype. When jittered_x is given it receives the jittered input in x's
// dtype (x itself when jitter is off). expert_index and gate are [N, top_k]: the top_k
// largest probabilities, best first, ties to the lowest index; with normalize_gates (and
// top_k > 1) each gate over the sum of the token's top_k probabilities. top_k > 1 runs on
// the cpu.
// A choice_bias [E] (aux-loss-free balancing) is added to the probabilities for the choice
// only; the gates stay the probabilities.
RouterOutput route(const Tensor& x, const Tensor& weight, const RouterJitter& jitter,
                   Tensor* jittered_x = nullptr, int64_t top_k = 1, bool normalize_gates = false,
                   const Tensor* choice_bias = nullptr);

// Top-1 token-choice routing and its expert capacity in one call: route(x, weight,
// jitter, jittered_x), then assign_capacity(expert_index, E, group_size, capacity), with
// the same results. On a GPU with many routing groups one kernel computes the softmax,
// top-1 (for few experts the logits too) and each token's place within its expert's
// capacity (kernels/router.cu).
// fixed_rows > 0 gives the assignment in the padded layout of fixed_rows rows per expert
// (CapacityAssignment::padded), at least min(capacity, group_size) x groups so that every
// kept token fits whatever the routing; on a GPU its counts then stay on the device
// (device_kept), so nothing waits for the router's results.
struct RoutedTokens {
  RouterOutput router;
  CapacityAssignment assignment;
};
RoutedTokens route_with_capacity(const Tensor& x, const Tensor& weight, const RouterJitter& jitter,
                                 Tensor* jittered_x, int64_t group_size, int64_t capacity,
                                 int64_t fixed_rows = 0);

// The router's own loss terms inside a backward, as weights of the total loss (0 = absent).
struct RouterLossGradients {
  double aux = 0.0;        // coefficient x scale of the per-layer load-balancing loss
  int64_t group_size = 0;  // its routing groups: N / group_size of them, in token order
  double z = 0.0;          // coefficient x scale of the router z-loss
};

// d(loss)/d(logits) [N, E] from d(loss)/d(gate) [N, k] (the combine's backward; through
// the normalisation when the gates are normalized) plus the
// per-layer load-balancing loss E * mean_g sum_i f_gi P_gi (f constant: first-choice counts)
// and the z-loss mean_t logsumexp_t^2, weighted as `losses` says. Routing decisions are
// constants: the gradient reaches the router only through the gates and the losses.
Tensor router_backward(const RouterOutput& r, const Tensor& d_gate,
                       const RouterLossGradients& losses);

// Jitter's backward: the gradient w.r.t. the jittered input times the same noise (the
// gradient w.r.t. the un-jittered input), in place.
void jitter_backward_(Tensor& d_input, const RouterJitter& jitter);

// The Eigen implementations behind the device switch (router.cc).
namespace cpu {
RouterOutput route(const Tensor& x, const Tensor& weight, const RouterJitter& jitter,
                   Tensor* jittered_x, int64_t top_k, bool normalize_gates,
                   const Tensor* choice_bias);
Tensor router_backward(const RouterOutput& r, const Tensor& d_gate,
                       const RouterLossGradients& losses);
void jitter_backward_(Tensor& d_input, const RouterJitter& jitter);
}  // namespace cpu

}  // namespace sw::ops
