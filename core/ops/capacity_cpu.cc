#include <algorithm>

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

}  // namespace sw::ops::cpu
