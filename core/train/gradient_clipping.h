// Global gradient-norm clipping over every gradient a step applies.
#pragma once

#include <vector>

#include "core/train/optimizer.h"

namespace sw {

// Scales every gradient by max_norm / norm when the global L2 norm exceeds max_norm
// (max_norm <= 0: no clipping). Returns the norm before clipping (accumulated in f64).
// Sharded gradients (shard_group, and expert_group for an expert's part under ep x mp)
// have their squares summed over their groups, the rest counted once.
double clip_gradient_norm(std::vector<ParameterGradient>& grads, double max_norm);

}  // namespace sw
