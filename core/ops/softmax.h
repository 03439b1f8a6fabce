// Softmax family over the last dimension, computed stably (max subtracted).
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

Tensor softmax(const Tensor& x);
void softmax_(Tensor& x);  // in place
// logsumexp over the last dimension: [..., n] -> [...].
Tensor logsumexp(const Tensor& x);

}  // namespace sw::ops
