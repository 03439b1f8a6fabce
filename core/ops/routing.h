// The Switch layer's routing ops (SPEC §2-3): the top-1 router, capacity assignment per
// group, dispatch into per-expert buffers and combine with gates, the load-balancing and
// z losses, and routing statistics.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/philox.h"
#include "core/tensor/tensor.h"

namespace sw::ops {

struct RouterOutput {
  Tensor logits;        // [N, E]
  Tensor probs;         // [N, E], softmax of logits
  Tensor expert_index;  // i32 [N], argmax of probs, ties to the lowest index
  Tensor gate;          // [N], probs[n, expert_index[n]]
};

struct RouterJitter {
  double eps = 0.0;  // router input multiplied by U(1 - eps, 1 + eps); 0 = off
  RandomStream stream;
  bool active() const { return eps > 0.0; }
};

// x [N, d] router input, weight [E, d] (HF `router.classifier.weight`). The router is
// computed in x's dtype, which the model keeps at f32 or wider. When jittered_x is given
// it receives the jittered input (x itself when jitter is off).
RouterOutput route(const Tensor& x, const Tensor& weight, const RouterJitter& jitter,
                   Tensor* jittered_x = nullptr);

// Tokens are routed in num_groups contiguous groups of group_size tokens. Within a group a
// token keeps its place when its inclusive running count for its expert is <= capacity,
// so exactly min(count, capacity) tokens per expert per group are kept, first come first
// served.
//
// Kept tokens are laid out expert by expert (a grouped layout, no padding): expert e owns
// rows [expert_offset[e], expert_offset[e + 1]) of the dispatched buffer, its tokens in
// token order. The paper's dense [E, capacity, d] buffer holds the same rows plus zero
// padding; the grouped layout costs no memory for experts that receive nothing, so a
// collapsed router in dropless mode needs N rows, not E x N.
struct CapacityAssignment {
  Tensor slot;                           // i32 [N]: row within the expert's block, -1 = dropped
  Tensor row;                            // i32 [N]: row in the dispatched buffer, -1 = dropped
  std::vector<int64_t> kept_per_expert;  // [E]
  std::vector<int64_t> expert_offset;    // [E + 1], expert_offset[E] = kept tokens
  int64_t capacity = 0;                  // per expert per group
  int64_t dropped = 0;

  int64_t num_experts() const { return static_cast<int64_t>(kept_per_expert.size()); }
  int64_t kept() const { return expert_offset.back(); }
  // The token each dispatched row holds: [kept()].
  std::vector<int64_t> token_of_row() const;  // on the host, whatever the device
  // The same assignment in the paper's padded layout: every expert owns rows_per_expert
  // rows (at least its kept tokens), expert e rows [e * rows_per_expert, ...), so the
  // experts run as one strided-batched GEMM over [E, rows_per_expert, d].
  CapacityAssignment padded(const Tensor& expert_index, int64_t rows_per_expert) const;
  int64_t max_kept() const;
};
CapacityAssignment assign_capacity(const Tensor& expert_index, int64_t num_experts,
                                   int64_t group_size, int64_t capacity);

// x [N, d] -> [kept, d]: each kept token's row copied to its expert's block.
Tensor dispatch(const Tensor& x, const CapacityAssignment& a);
// expert_out [kept, d] -> [N, d]: gate * the token's expert row; 0 if dropped. The gate is
// in expert_out's dtype or, on the GPU in bf16, the router's f32.
Tensor combine(const Tensor& expert_out, const Tensor& gate, const CapacityAssignment& a);

// Tensors on a GPU: the router, capacity, dispatch and combine run there; BalanceSums,
// router_z_loss and routing_stats copy their (small) inputs to the host.

// Load-balancing loss (paper eq. 4-6) without its coefficient: per group,
// E * sum_i f_i * P_i, with f_i the fraction of the group's tokens assigned to expert i
// and P_i the group's mean router probability for i; averaged over groups. Sums
// accumulate over several calls so a group can span layers (HF's concatenated mode).
class BalanceSums {
 public:
  BalanceSums(int64_t num_groups, int64_t num_experts);
  // probs [N, E]; assigned i32 [N] (the expert each token counts for); group of token n
  // is n / (N / num_groups).
  void add(const Tensor& probs, const Tensor& assigned);
  double loss() const;

 private:
  int64_t groups_, experts_;
  std::vector<double> counts_, prob_sums_, tokens_;
};

// Router z-loss without its coefficient: mean over tokens of logsumexp(logits)^2.
double router_z_loss(const Tensor& logits);

struct RoutingStats {
  std::vector<int64_t> tokens_per_expert;  // argmax counts, before capacity
  std::vector<int64_t> kept_per_expert;    // after capacity
  double dropped_fraction = 0.0;
  double router_entropy = 0.0;  // mean over tokens of -sum_i p_i log p_i
};
RoutingStats routing_stats(const RouterOutput& r, const CapacityAssignment& a);

}  // namespace sw::ops
