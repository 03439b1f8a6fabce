// In-place elementwise arithmetic on CUDA behind core/ops/elementwise.h: residual adds and
// scaling. f32 and bf16 storage, arithmetic in f32.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

void add_(Tensor& a, const Tensor& b);
void scale_(Tensor& a, double s);
void round_to_bf16_(Tensor& a);  // f32

}  // namespace sw::kernels
