// Small elementwise ops the layers need between the big ones.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

// a += b (same shape and dtype): the residual connections.
void add_(Tensor& a, const Tensor& b);
// a *= s.
void scale_(Tensor& a, double s);

}  // namespace sw::ops
