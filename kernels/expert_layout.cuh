// The measured choice of expert GEMM layout behind core/ops/gemm.h's choose_expert_layout:
// each shape class timed once per process on the device, in each candidate layout.
#pragma once

#include <vector>

#include "core/ops/gemm.h"
#include "core/tensor/tensor.h"

namespace sw::kernels {

ops::ExpertLayout choose_expert_layout(const Tensor& weight, bool transpose_weight,
                                       const std::vector<int64_t>& kept_per_expert,
                                       bool padded_allowed);
std::vector<ops::ExpertLayoutMeasurement> expert_layout_table();

}  // namespace sw::kernels
