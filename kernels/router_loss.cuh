// The Switch layer's loss terms and statistics on CUDA behind core/ops/router_loss.h: the
// per-group sums they are made of, reduced on the device so that only [groups, experts]
// sums (not [tokens, experts] probabilities) travel to the host.
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace sw::kernels {

struct GroupSums {
  std::vector<double> counts;     // [groups, experts]: tokens whose first choice is e
  std::vector<double> prob_sums;  // [groups, experts]: sum of p_e over the group's tokens
  std::vector<double> entropy;    // [groups]: sum over the group's tokens of -sum_e p log p
};

// probs f32 [N, E], assigned i32 [N, k] (the first choice counts), N divisible by groups.
// Each sum runs over the group's tokens in token order in f64, as the cpu's do.
GroupSums group_sums(const Tensor& probs, const Tensor& assigned, int64_t groups);

// Sum over rows of logsumexp(logits[row])^2, in f64 in a fixed order (logits f32 [N, E]).
double sum_of_squared_logsumexp(const Tensor& logits);

}  // namespace sw::kernels
