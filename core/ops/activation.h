// FFN activations. gelu is the tanh approximation ("gelu_new"), as T5 v1.1 and the HF
// `gated-gelu` feed-forward use it.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);
// gelu(gate) * linear, elementwise (GEGLU's combination step).
Tensor gated_gelu(const Tensor& gate, const Tensor& linear);

}  // namespace sw::ops
