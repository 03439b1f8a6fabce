// Expert capacity (docs/MATH.md §2): which routed tokens each expert keeps, and where each kept
// token sits in the dispatched buffer.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/tensor.h"

namespace sw::ops {

// Tokens are routed in num_groups contiguous groups of group_size tokens. Within a group a
// token's assignment is kept when its inclusive running count for its expert is <=
// capacity, so exactly min(count, capacity) assignments per expert per group are kept,
// first come first served in token order. For k > 1 capacity serves choice by choice:
// every token's first choice, then every second choice.
//
// Kept assignments are laid out expert by expert (a grouped layout, no padding): expert e
// owns rows [expert_offset[e], expert_offset[e + 1]) of the dispatched buffer, in the order
// capacity served them (token order for k = 1). The paper's dense [E, capacity, d] buffer holds the
// same rows plus zero padding; the grouped layout costs no memory for experts that receive nothing,
// so a collapsed router in dropless mode needs N rows, not E x N.
struct CapacityAssignment {
  Tensor slot;                           // i32 [N, k]: row within the expert's block, -1 = dropped
  Tensor row;                            // i32 [N, k]: row in the dispatched buffer, -1 = dropped
  std::vector<int64_t> kept_per_expert;  // [E]
  std::vector<int64_t> expert_offset;    // [E + 1], expert_offset[E] = kept assignments
  int64_t capacity = 0;                  // per expert per group
  int64_t dropped = 0;                   // assignments beyond capacity
  // On a GPU, counts left on the device (route_with_capacity's fixed padded layout, which
  // runs without them): i64 [E] kept per expert, with kept_per_expert empty and dropped
  // -1 until kept_counts() and dropped_count() read them back (a wait). Else undefined.
  Tensor device_kept;

  int64_t num_experts() const { return static_cast<int64_t>(expert_offset.size()) - 1; }
  // kept_per_expert and dropped, read from the device where they were left there.
  std::vector<int64_t> kept_counts() const;
  int64_t dropped_count() const;
  int64_t kept() const { return expert_offset.back(); }
  // The token each dispatched row holds: [kept()], on the host whatever the device.
  std::vector<int64_t> token_of_row() const;
  // The same plus first_token as an i64 [kept()] tensor on the assignment's device, built
  // there (nothing read back): rows no token holds (the padded layout's spare rows) get
  // first_token.
  Tensor row_tokens(int64_t first_token) const;
  // The same assignment in the paper's padded layout: every expert owns rows_per_expert
  // rows (at least its kept tokens), expert e rows [e * rows_per_expert, ...), so the
  // experts run as one strided-batched GEMM over [E, rows_per_expert, d].
  CapacityAssignment padded(const Tensor& expert_index, int64_t rows_per_expert) const;
  int64_t max_kept() const;
};

// expert_index i32 [N, k] (the router's choices, on the host or a GPU); N splits into
// groups of group_size. Indices outside [0, num_experts) are out-of-range errors (checked
// on the host; the GPU kernel trusts the router that made them).
CapacityAssignment assign_capacity(const Tensor& expert_index, int64_t num_experts,
                                   int64_t group_size, int64_t capacity);

// Expert choice (docs/MATH.md §2): within each group of group_size tokens every expert keeps
// the min(capacity, group_size) tokens with the highest probability for it, ties to the
// earlier token. expert_index [N, k] and probs [N, E] are the router's (k = E: every expert
// once per token); assignment (t, j) is kept when token t is among the tokens expert
// expert_index[t, j] chose. Each expert's block holds its tokens in token order. CPU.
CapacityAssignment assign_expert_choice(const Tensor& expert_index, const Tensor& probs,
                                        int64_t group_size, int64_t capacity);

// The Eigen implementations behind the device switch (capacity.cc).
namespace cpu {
CapacityAssignment assign_expert_choice(const Tensor& expert_index, const Tensor& probs,
                                        int64_t group_size, int64_t capacity);
CapacityAssignment assign_capacity(const Tensor& expert_index, int64_t num_experts,
                                   int64_t group_size, int64_t capacity);
Tensor padded_rows(const Tensor& expert_index, const Tensor& slot, int64_t rows_per_expert);
}  // namespace cpu

}  // namespace sw::ops
