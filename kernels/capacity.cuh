// Expert capacity on CUDA behind core/ops/capacity.h: per-group running counts, then a CUB
// scan into the grouped per-expert layout, and the padded [E, rows_per_expert] view of the
// same assignment.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/tensor.h"

namespace sw::kernels {

struct DeviceAssignment {
  Tensor slot, row;  // i32 [N] on the device (core/ops views them as [N, 1])
  std::vector<int64_t> kept_per_expert, expert_offset;
  int64_t dropped = 0;
};
DeviceAssignment assign_capacity(const Tensor& expert_index, int64_t num_experts,
                                 int64_t group_size, int64_t capacity);

// padded[t] = expert_index[t] * rows_per_expert + slot[t], or -1 when dropped.
Tensor padded_rows(const Tensor& expert_index, const Tensor& slot, int64_t rows_per_expert);

}  // namespace sw::kernels
