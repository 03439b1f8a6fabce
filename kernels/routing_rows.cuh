// One warp's routing work, shared by the router, capacity and fused routing kernels
// (kernels/router.cu, kernels/capacity.cu): softmax and top-1 of one token's logits, the
// whole router for one token, and the capacity positions of one routing group.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cuda_types.cuh"

namespace sw::kernels {

// Softmax and top-1 of one token's logits row: max and argmax (ties to the lowest index),
// then the probabilities; lane 0 writes the index and gate.
__device__ inline void softmax_top1_row(const float* row, float* probs, int32_t* index, float* gate,
                                        int64_t experts, int lane) {
  float best = -INFINITY;
  int best_index = 0x7fffffff;
  for (int64_t e = lane; e < experts; e += 32) {
    const float v = row[e];
    if (v > best) {  // lanes visit increasing e: the first maximum wins within a lane
      best = v;
      best_index = static_cast<int>(e);
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, best, offset);
    const int i = __shfl_xor_sync(0xffffffffu, best_index, offset);
    if (v > best || (v == best && i < best_index)) {
      best = v;
      best_index = i;
    }
  }
  // A row of NaN logits has no maximum: expert 0, so that no index past the experts
  // reaches the capacity counters (its probabilities stay NaN for the step's checks).
  if (best_index >= experts) best_index = 0;
  float sum = 0.0f;
  for (int64_t e = lane; e < experts; e += 32) sum += expf(row[e] - best);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  const float inv = 1.0f / sum;
  for (int64_t e = lane; e < experts; e += 32) probs[e] = expf(row[e] - best) * inv;
  if (lane == 0) {
    *index = best_index;
    *gate = inv;  // exp(best - best) / sum
  }
}

// The whole router for one token row x [d] and an f32 weight [E, d]: each logit a
// warp-wide f32 dot product (the row read from L1 after the first expert), then
// softmax_top1_row.
template <typename T>
__device__ inline void router_row(const T* row, const float* weight, float* logits, float* probs,
                                  int32_t* index, float* gate, int64_t d, int64_t experts,
                                  int lane) {
  for (int64_t e = 0; e < experts; ++e) {
    const float* w = weight + e * d;
    float acc = 0.0f;
    for (int64_t j = lane; j < d; j += 32) acc += load(row, j) * w[j];
    for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    if (lane == e % 32) logits[e] = acc;
  }
  __syncwarp();  // the row's logits, written by several lanes, are visible to the warp
  softmax_top1_row(logits, probs, index, gate, experts, lane);
}

// The capacity positions of routing group g, by one warp walking its tokens in token
// order, 32 at a time: lanes routed to the same expert rank themselves with
// __match_any_sync, and `counts` [experts] (shared memory) carries the running count
// across chunks. A token past the capacity gets -1; kept[e * groups + g] receives how many
// of expert e's tokens the group keeps.
__device__ inline void count_group_positions(const int32_t* index, int32_t* position, int64_t* kept,
                                             int64_t* counts, int64_t g, int64_t groups,
                                             int64_t group_size, int64_t experts, int64_t capacity,
                                             unsigned lane) {
  for (int64_t e = lane; e < experts; e += 32) counts[e] = 0;
  __syncwarp();
  const unsigned lanes_below = (1u << lane) - 1;
  for (int64_t start = g * group_size; start < (g + 1) * group_size; start += 32) {
    const int64_t t = start + lane;
    const bool active = t < (g + 1) * group_size;
    const int e = active ? index[t] : -1;
    const unsigned peers = __match_any_sync(0xffffffffu, e);
    if (active) {
      const int64_t count = counts[e] + __popc(peers & lanes_below) + 1;
      position[t] = count <= capacity ? static_cast<int32_t>(count - 1) : -1;
    }
    __syncwarp();
    if (active && lane == static_cast<unsigned>(__ffs(peers) - 1)) counts[e] += __popc(peers);
    __syncwarp();
  }
  for (int64_t e = lane; e < experts; e += 32)
    kept[e * groups + g] = counts[e] < capacity ? counts[e] : capacity;
}

}  // namespace sw::kernels
