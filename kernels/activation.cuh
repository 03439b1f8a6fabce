// Activations on CUDA behind core/ops/activation.h: ReLU, GELU (tanh form and exact) and
// gated GELU, forward and backward. f32 and bf16 storage, arithmetic in f32.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

Tensor relu(const Tensor& x);
void relu_(Tensor& x);  // in place (the fused GEMM's fallback, kernels/gemm.cc)
Tensor gelu(const Tensor& x);
Tensor gelu_exact(const Tensor& x);
Tensor gated_gelu(const Tensor& gate, const Tensor& linear);

Tensor relu_backward(const Tensor& dy, const Tensor& x);
Tensor gelu_backward(const Tensor& dy, const Tensor& x);
Tensor gelu_exact_backward(const Tensor& dy, const Tensor& x);
void gated_gelu_backward(const Tensor& dy, const Tensor& gate, const Tensor& linear, Tensor& dgate,
                         Tensor& dlinear);

}  // namespace sw::kernels
