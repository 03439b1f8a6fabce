// Token dispatch on CUDA behind core/ops/dispatch.h: the forward gather of kept tokens into
// per-expert rows, the gated combine back into token order, and their backwards (one
// expert per token). f32 and bf16 storage; gates in f32.
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace sw::kernels {

// x [N, d] -> [kept, d] by row; combine: y[t] = gate[t] * out[row[t]], 0 when row < 0.
Tensor dispatch(const Tensor& x, const Tensor& row, int64_t kept);
Tensor combine(const Tensor& expert_out, const Tensor& row, const Tensor& gate);
// d_x [N, d]: d_buffer[row[t]], 0 for a dropped token.
Tensor dispatch_backward(const Tensor& d_buffer, const Tensor& row);
// d_expert_out [kept, d] = gate[t] * dy[t] on each kept token's row (0 on rows no token
// holds); d_gate f32 [N, 1] = dy[t] . expert_out[row[t]] (0 when dropped).
void combine_backward(const Tensor& dy, const Tensor& expert_out, const Tensor& row,
                      const Tensor& gate, Tensor& d_expert_out, Tensor& d_gate);

}  // namespace sw::kernels
