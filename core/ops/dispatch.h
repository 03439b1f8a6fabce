// Token dispatch (docs/MATH.md §2): kept tokens gathered into their experts' rows of one buffer,
// and the combine that scales each expert row by its gate and returns it to its token.
// Rows follow a CapacityAssignment (grouped or padded layout). Any float dtype; the gate is
// in the rows' dtype or, on a GPU in bf16, the router's f32.
#pragma once

#include <cstdint>

#include "core/ops/capacity.h"
#include "core/tensor/tensor.h"

namespace sw::ops {

// x [N, d] -> [kept, d]: each kept assignment's token row copied to its expert's block.
Tensor dispatch(const Tensor& x, const CapacityAssignment& a);
// expert_out [kept, d] -> [N, d]: sum over a token's kept assignments of gate * its expert
// row; 0 for a token with none (the sublayer then passes h through).
Tensor combine(const Tensor& expert_out, const Tensor& gate, const CapacityAssignment& a);

// Backward of dispatch: d_x [N, d], each token's rows summed back (0 when dropped).
Tensor dispatch_backward(const Tensor& d_buffer, const CapacityAssignment& a);
// Backward of combine from dy [N, d]: d_expert_out [kept, d] = gate * dy on kept rows (0 on
// padding), d_gate [N, k] = dy . expert row (0 when dropped), in the gate's dtype (f32 on a
// GPU).
void combine_backward(const Tensor& dy, const Tensor& expert_out, const Tensor& gate,
                      const CapacityAssignment& a, Tensor& d_expert_out, Tensor& d_gate);

// The Eigen implementations behind the device switch (dispatch.cc).
namespace cpu {
Tensor dispatch(const Tensor& x, const CapacityAssignment& a);
Tensor combine(const Tensor& expert_out, const Tensor& gate, const CapacityAssignment& a);
Tensor dispatch_backward(const Tensor& d_buffer, const CapacityAssignment& a);
void combine_backward(const Tensor& dy, const Tensor& expert_out, const Tensor& gate,
                      const CapacityAssignment& a, Tensor& d_expert_out, Tensor& d_gate);
}  // namespace cpu

}  // namespace sw::ops
