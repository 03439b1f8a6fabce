// The softmax family on CUDA behind core/ops/softmax.h, over the last dimension, one block
// per row: softmax in place, logsumexp and the softmax backward. f32 and bf16 storage,
// arithmetic in f32.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

void softmax_(Tensor& x);
// [..., n] -> [...] in x's dtype.
Tensor logsumexp(const Tensor& x);
// dx = p * (dp - sum(dp * p)) per row.
Tensor softmax_backward(const Tensor& dp, const Tensor& p);

}  // namespace sw::kernels
