// T5 relative position buckets and the per-head bias they index (docs/MATH.md §1).
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace sw::ops {

// Bucket of rel = key_pos - query_pos. Encoder (bidirectional): half the buckets per
// direction; decoder: only keys at or before the query get distinct buckets. The log
// branch is computed in f32, as HF computes it, so bucket boundaries match its checkpoints.
int32_t relative_position_bucket(int64_t rel, bool bidirectional, int64_t num_buckets,
                                 int64_t max_distance);

// table [num_buckets, H] -> bias [H, q_len, k_len] for queries at positions first_query,
// first_query + 1, ...: bias[h, i, j] = table[bucket(j - (first_query + i)), h], in the
// table's dtype (f32/f64) on the cpu, in f32 on a GPU (as attention reads it there).
// Decoding asks for one query row per step.
Tensor position_bias(const Tensor& table, int64_t q_len, int64_t k_len, bool bidirectional,
                     int64_t max_distance, int64_t first_query = 0);

// Backward: dtable[bucket(j - i), first_head + h] += dbias[h, i, j] for dbias [H, q, k]
// (H of dtable's heads, from first_head on: model parallelism holds some heads), summed
// over (i, j) in row-major order.
void position_bias_backward(const Tensor& dbias, bool bidirectional, int64_t max_distance,
                            int64_t first_head, Tensor& dtable);

// The Eigen implementations behind the device switch (position_bias.cc).
namespace cpu {
Tensor position_bias(const Tensor& table, int64_t q_len, int64_t k_len, bool bidirectional,
                     int64_t max_distance, int64_t first_query);
void position_bias_backward(const Tensor& dbias, bool bidirectional, int64_t max_distance,
                            int64_t first_head, Tensor& dtable);
}  // namespace cpu

}  // namespace sw::ops
