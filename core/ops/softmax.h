// Softmax family over the last dimension, computed stably (max subtracted).
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

Tensor softmax(const Tensor& x);
void softmax_(Tensor& x);  // in place
// logsumexp over the last dimension: [..., n] -> [...].
Tensor logsumexp(const Tensor& x);

// Backward of p = softmax(x) from p and dp: dx = p * (dp - sum(dp * p)) per row.
Tensor softmax_backward(const Tensor& dp, const Tensor& p);

}  // namespace sw::ops
