// Activations on CUDA behind core/ops/activation.h: the forward ReLU, GELU (tanh form) and
// gated GELU. f32 and bf16 storage, arithmetic in f32.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);
Tensor gelu_exact(const Tensor& x);
Tensor gated_gelu(const Tensor& gate, const Tensor& linear);

}  // namespace sw::kernels
