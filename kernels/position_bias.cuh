// T5 relative position bias on CUDA behind core/ops/position_bias.h: the lookup from the
// table and its backward. The buckets come from ops::relative_position_bucket on the host
// (one per distance, so the f32 log branch is the CPU's, bit for bit).
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

// As ops::position_bias for a table on the GPU (f32 or bf16); the bias is f32, as
// attention on the GPU reads it.
Tensor position_bias(const Tensor& table, int64_t q_len, int64_t k_len, bool bidirectional,
                     int64_t max_distance, int64_t first_query);

// As ops::position_bias_backward, f32. One thread per (bucket, head) adds the bucket's
// elements in the CPU path's row-major (i, j) order, with no atomics: the same bits.
void position_bias_backward(const Tensor& dbias, bool bidirectional, int64_t max_distance,
                            int64_t first_head, Tensor& dtable);

}  // namespace sw::kernels
