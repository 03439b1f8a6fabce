#include <algorithm>
#include <numeric>
#include <vector>

#include "core/ops/capacity.h"
#include "core/ops/cpu_util.h"

namespace sw::ops::cpu {

CapacityAssignment assign_capacity(const Tensor& expert_index, int64_t num_experts,
                                   int64_t group_size, int64_t capacity) {
  const int64_t n = expert_index.dim(0), k = expert_index.dim(1);
  CapacityAssignment a;
  a.capacity = capacity;
  a.slot = Tensor::empty({n, k}, DType::i32);
  a.kept_per_expert.assign(num_experts, 0);
  const int32_t* idx = expert_index.data<int32_t>();
  int32_t* slot = a.slot.data<int32_t>();
  std::vector<int64_t> in_group(num_experts);
  for (int64_t start = 0; start < n; start += group_size) {
    std::fill(in_group.begin(), in_group.end(), 0);
    // Choice by choice: every token's first choice is served before any second choice.
    for (int64_t j = 0; j < k; ++j) {
      for (int64_t t = start; t < start + group_size; ++t) {
        const int64_t i = t * k + j;
        const int32_t e = idx[i];
        SW_CHECK(e >= 0 && e < num_experts, Status::kOutOfRange, "assign_capacity: expert index ",
                 e, " at token ", t, " is outside [0, ", num_experts, ")");
        if (++in_group[e] <= capacity) {
          slot[i] = static_cast<int32_t>(a.kept_per_expert[e]++);
        } else {
          slot[i] = -1;
          ++a.dropped;
        }
      }
    }
  }
  a.expert_offset.assign(num_experts + 1, 0);
  for (int64_t e = 0; e < num_experts; ++e)
    a.expert_offset[e + 1] = a.expert_offset[e] + a.kept_per_expert[e];
  a.row = Tensor::empty({n, k}, DType::i32);
  int32_t* row = a.row.data<int32_t>();
  for (int64_t i = 0; i < n * k; ++i)
    row[i] = slot[i] < 0 ? -1 : static_cast<int32_t>(a.expert_offset[idx[i]] + slot[i]);
  return a;
}

Tensor padded_rows(const Tensor& expert_index, const Tensor& slot, int64_t rows_per_expert) {
  Tensor row = Tensor::empty(slot.shape(), DType::i32);
  const int32_t* s = slot.data<int32_t>();
  const int32_t* idx = expert_index.data<int32_t>();
  int32_t* r = row.data<int32_t>();
  for (int64_t i = 0; i < slot.numel(); ++i)
    r[i] = s[i] < 0 ? -1 : static_cast<int32_t>(idx[i] * rows_per_expert + s[i]);
  return row;
}

CapacityAssignment assign_expert_choice(const Tensor& expert_index, const Tensor& probs,
                                        int64_t group_size, int64_t capacity) {
  const int64_t n = probs.dim(0), experts = probs.dim(1), k = expert_index.dim(1);
  const int64_t take = std::min(capacity, group_size);
  // chosen[t * E + e]: the slot of token t in expert e's block, -1 when e did not choose t.
  std::vector<int32_t> chosen(static_cast<size_t>(n * experts), -1);
  CapacityAssignment a;
  a.capacity = capacity;
  a.kept_per_expert.assign(experts, 0);
  visit_float(probs.dtype(), "assign_expert_choice", [&](auto zero) {
    using T = decltype(zero);
    const T* p = probs.data<T>();
    std::vector<int64_t> tokens(static_cast<size_t>(group_size));
    for (int64_t start = 0; start < n; start += group_size)
      for (int64_t e = 0; e < experts; ++e) {
        std::iota(tokens.begin(), tokens.end(), start);
        std::partial_sort(tokens.begin(), tokens.begin() + take, tokens.end(),
                          [&](int64_t s, int64_t t) {
                            const T ps = p[s * experts + e], pt = p[t * experts + e];
                            return ps > pt || (ps == pt && s < t);
                          });
        std::sort(tokens.begin(), tokens.begin() + take);  // token order within the block
        for (int64_t i = 0; i < take; ++i)
          chosen[tokens[i] * experts + e] = static_cast<int32_t>(a.kept_per_expert[e]++);
      }
  });
  a.expert_offset.assign(experts + 1, 0);
  for (int64_t e = 0; e < experts; ++e)
    a.expert_offset[e + 1] = a.expert_offset[e] + a.kept_per_expert[e];
  a.slot = Tensor::empty({n, k}, DType::i32);
  a.row = Tensor::empty({n, k}, DType::i32);
  const int32_t* idx = expert_index.data<int32_t>();
  int32_t* slot = a.slot.data<int32_t>();
  int32_t* row = a.row.data<int32_t>();
  for (int64_t i = 0; i < n * k; ++i) {
    const int32_t e = idx[i];
    SW_CHECK(e >= 0 && e < experts, Status::kOutOfRange, "assign_expert_choice: expert index ", e,
             " at token ", i / k, " is outside [0, ", experts, ")");
    slot[i] = chosen[(i / k) * experts + e];
    row[i] = slot[i] < 0 ? -1 : static_cast<int32_t>(a.expert_offset[e] + slot[i]);
    a.dropped += slot[i] < 0;
  }
  return a;
}

}  // namespace sw::ops::cpu
