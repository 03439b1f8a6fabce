// Expert capacity on CUDA behind core/ops/capacity.h: per-group running counts, then a CUB
// scan into the grouped per-expert layout, and the padded [E, rows_per_expert] view of the
// same assignment.
#pragma once

#include <cstdint>
#include <vector>

#include "core/ops/capacity.h"
#include "core/tensor/tensor.h"

namespace sw::kernels {

// ops::assign_capacity for one expert per token (expert_index i32 [N, 1]): a warp per
// routing group counts, then place_tokens.
ops::CapacityAssignment assign_capacity(const Tensor& expert_index, int64_t num_experts,
                                        int64_t group_size, int64_t capacity,
                                        int64_t fixed_rows = 0);

// The grouped layout from each token's position among its expert's tokens of its group
// (i32 [N], -1 = dropped) and the kept counts kept[e * groups + g] (i64): a CUB scan, each
// token's row, and the per-expert totals copied to the host (the GEMM sizes). With
// fixed_rows > 0 the padded layout of that many rows per expert instead, its totals left
// on the device (CapacityAssignment::device_kept): nothing waits for the device.
ops::CapacityAssignment place_tokens(const Tensor& expert_index, const Tensor& position,
                                     const Tensor& kept, int64_t num_experts, int64_t group_size,
                                     int64_t capacity, int64_t fixed_rows = 0);

// ops::CapacityAssignment::row_tokens: out[row[t]] = t / k + first_token for row i32 [N, k],
// out i64 [rows], first_token where no token lands.
Tensor row_tokens(const Tensor& row, int64_t rows, int64_t first_token);

// padded[t] = expert_index[t] * rows_per_expert + slot[t], or -1 when dropped.
Tensor padded_rows(const Tensor& expert_index, const Tensor& slot, int64_t rows_per_expert);

}  // namespace sw::kernels
