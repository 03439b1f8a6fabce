// FFN activations (docs/MATH.md §1). gelu is the tanh approximation ("gelu_new"), as T5 v1.1 and
// the HF `gated-gelu` feed-forward use it. Elementwise over any shape; f32/f64 on the cpu,
// f32/bf16 storage with f32 arithmetic on a GPU.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);
// The exact GELU, 0.5 x (1 + erf(x / sqrt(2))) (HF's "gelu"; torch's default).
Tensor gelu_exact(const Tensor& x);
// gelu(gate) * linear, elementwise (GEGLU's combination step).
Tensor gated_gelu(const Tensor& gate, const Tensor& linear);

// Backward: dx from the forward input x and dy.
Tensor relu_backward(const Tensor& dy, const Tensor& x);
Tensor gelu_backward(const Tensor& dy, const Tensor& x);
Tensor gelu_exact_backward(const Tensor& dy, const Tensor& x);
// d(gelu(gate) * linear): dgate and dlinear.
void gated_gelu_backward(const Tensor& dy, const Tensor& gate, const Tensor& linear, Tensor& dgate,
                         Tensor& dlinear);

// The Eigen implementations behind the device switch (activation.cc).
namespace cpu {
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);
Tensor gelu_exact(const Tensor& x);
Tensor gated_gelu(const Tensor& gate, const Tensor& linear);
Tensor relu_backward(const Tensor& dy, const Tensor& x);
Tensor gelu_backward(const Tensor& dy, const Tensor& x);
Tensor gelu_exact_backward(const Tensor& dy, const Tensor& x);
void gated_gelu_backward(const Tensor& dy, const Tensor& gate, const Tensor& linear, Tensor& dgate,
                         Tensor& dlinear);
}  // namespace cpu

}  // namespace sw::ops
