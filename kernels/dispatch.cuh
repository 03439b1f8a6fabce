// Token dispatch on CUDA behind core/ops/dispatch.h: the forward gather of kept tokens into
// per-expert rows, and the gated combine back into token order. f32 and bf16 storage.
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace sw::kernels {

// x [N, d] -> [kept, d] by row; combine: y[t] = gate[t] * out[row[t]], 0 when row < 0.
Tensor dispatch(const Tensor& x, const Tensor& row, int64_t kept);
Tensor combine(const Tensor& expert_out, const Tensor& row, const Tensor& gate);

}  // namespace sw::kernels
