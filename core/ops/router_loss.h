// The Switch layer's loss terms and statistics (docs/MATH.md §3), finished on the host. For
// GPU tensors the sums over tokens run on the device (kernels/router_loss.cu) and only
// per-group sums ([groups, experts]) or one number cross to the host, not the [N, E]
// probabilities or logits.
#pragma once

#include <cstdint>
#include <vector>

#include "core/ops/capacity.h"
#include "core/ops/router.h"
#include "core/tensor/tensor.h"

namespace sw::ops {

// Load-balancing loss (paper eq. 4-6) without its coefficient: per group,
// E * sum_i f_i * P_i, with f_i the fraction of the group's tokens assigned to expert i
// and P_i the group's mean router probability for i; averaged over groups. Sums
// accumulate over several calls so a group can span layers (HF's concatenated mode).
class BalanceSums {
 public:
  BalanceSums(int64_t num_groups, int64_t num_experts);
  // probs [N, E]; assigned i32 [N] or [N, k] (each token counts for its first choice);
  // token n belongs to group n / (N / num_groups).
  void add(const Tensor& probs, const Tensor& assigned);
  double loss() const;

 private:
  int64_t groups_, experts_;
  std::vector<double> counts_, prob_sums_, tokens_;
};

// Router z-loss without its coefficient: mean over tokens of logsumexp(logits)^2, in f64.
double router_z_loss(const Tensor& logits);

struct RoutingStats {
  std::vector<int64_t> tokens_per_expert;  // first-choice counts, before capacity
  std::vector<int64_t> kept_per_expert;    // assignments after capacity (k per token)
  int64_t choices = 1;                     // k: the experts each token is sent to
  double dropped_fraction = 0.0;           // dropped assignments / assignments
  double router_entropy = 0.0;             // mean over tokens of -sum_i p_i log p_i
};
RoutingStats routing_stats(const RouterOutput& r, const CapacityAssignment& a);

}  // namespace sw::ops
