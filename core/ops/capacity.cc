#include "core/ops/capacity.h"

#include <algorithm>

#include "core/ops/checks.h"
#include "core/tensor/device_switch.h"
#include "kernels/capacity.cuh"

namespace sw::ops {
std::vector<int64_t> CapacityAssignment::token_of_row() const {
  const Tensor rows = row.to(Device::cpu());
  const int64_t k = rows.ndim() == 2 ? rows.dim(1) : 1;
  std::vector<int64_t> tokens(kept());
  const int32_t* r = rows.data<int32_t>();
  for (int64_t i = 0; i < rows.numel(); ++i)
    if (r[i] >= 0) tokens[r[i]] = i / k;
  return tokens;
}

std::vector<int64_t> CapacityAssignment::kept_counts() const {
  if (!device_kept.defined()) return kept_per_expert;
  const Tensor counts = device_kept.to(Device::cpu());
  return std::vector<int64_t>(counts.data<int64_t>(), counts.data<int64_t>() + counts.numel());
}

int64_t CapacityAssignment::dropped_count() const {
  if (!device_kept.defined()) return dropped;
  int64_t kept = 0;
  for (int64_t k : kept_counts()) kept += k;
  return slot.numel() - kept;
}

Tensor CapacityAssignment::row_tokens(int64_t first_token) const {
  if (on_cuda(row)) SW_RUN_ON_CUDA(kernels::row_tokens(row, kept(), first_token));
  std::vector<int64_t> tokens = token_of_row();
  for (int64_t& t : tokens) t += first_token;
  return Tensor::from_vector<int64_t>(tokens, {kept()});
}

int64_t CapacityAssignment::max_kept() const {
  SW_CHECK(!device_kept.defined(), Status::kInternal,
           "max_kept: the counts are on the device (a fixed padded layout needs none)");
  int64_t m = 0;
  for (int64_t k : kept_per_expert) m = std::max(m, k);
  return m;
}

CapacityAssignment CapacityAssignment::padded(const Tensor& expert_index,
                                              int64_t rows_per_expert) const {
  SW_CHECK_ARG(rows_per_expert >= max_kept(), "padded layout: ", rows_per_expert,
               " rows per expert cannot hold ", max_kept(), " kept tokens");
  check_shape(expert_index, slot.shape(), "padded layout: expert_index");
  check_same_device({&expert_index, &slot}, "padded layout");
  CapacityAssignment p = *this;
  for (int64_t e = 0; e <= num_experts(); ++e) p.expert_offset[e] = e * rows_per_expert;
  if (on_cuda(slot))
    p.row = [&]() -> Tensor {
      SW_RUN_ON_CUDA(kernels::padded_rows(expert_index, slot, rows_per_expert).view(slot.shape()));
    }();
  else
    p.row = cpu::padded_rows(expert_index, slot, rows_per_expert);
  return p;
}

CapacityAssignment assign_capacity(const Tensor& expert_index, int64_t num_experts,
                                   int64_t group_size, int64_t capacity) {
  check_dtype(expert_index, DType::i32, "assign_capacity: expert_index");
  SW_CHECK_ARG(expert_index.ndim() == 2, "assign_capacity: expert_index must be [N, k], got ",
               expert_index.str());
  const int64_t n = expert_index.dim(0);
  SW_CHECK_ARG(num_experts >= 1, "assign_capacity: num_experts must be >= 1, got ", num_experts);
  SW_CHECK_ARG(group_size >= 1 && n % group_size == 0, "assign_capacity: ", n,
               " tokens do not split into groups of ", group_size);
  SW_CHECK_ARG(capacity >= 0, "assign_capacity: capacity must be >= 0, got ", capacity);
  if (on_cuda(expert_index)) {
    SW_CHECK(expert_index.dim(1) == 1, Status::kUnsupported,
             "assign_capacity: the GPU kernel takes one expert per token, got ",
             expert_index.str());
    SW_RUN_ON_CUDA(kernels::assign_capacity(expert_index, num_experts, group_size, capacity));
  }
  return cpu::assign_capacity(expert_index, num_experts, group_size, capacity);
}

CapacityAssignment assign_expert_choice(const Tensor& expert_index, const Tensor& probs,
                                        int64_t group_size, int64_t capacity) {
  check_dtype(expert_index, DType::i32, "assign_expert_choice: expert_index");
  SW_CHECK_ARG(expert_index.ndim() == 2 && probs.ndim() == 2 && probs.dim(0) == expert_index.dim(0),
               "assign_expert_choice: expected expert_index [N, k] and probs [N, E], got ",
               expert_index.str(), ", ", probs.str());
  const int64_t n = probs.dim(0);
  SW_CHECK_ARG(group_size >= 1 && n % group_size == 0, "assign_expert_choice: ", n,
               " tokens do not split into groups of ", group_size);
  SW_CHECK_ARG(capacity >= 0, "assign_expert_choice: capacity must be >= 0, got ", capacity);
  check_same_device({&expert_index, &probs}, "assign_expert_choice");
  SW_CHECK(!on_cuda(probs), Status::kUnsupported,
           "assign_expert_choice: expert choice runs on the cpu in this version");
  return cpu::assign_expert_choice(expert_index, probs, group_size, capacity);
}

}  // namespace sw::ops
