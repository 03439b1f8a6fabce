// Small elementwise ops the layers need between the big ones. Any shape; f32/f64 on the
// cpu, f32/bf16 storage with f32 arithmetic on a GPU.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

// a += b (same shape, dtype and device): the residual connections. Its backward is the
// identity on both sides.
void add_(Tensor& a, const Tensor& b);
// a *= s. Backward: the same scaling of the gradient.
void scale_(Tensor& a, double s);

// The Eigen implementations behind the device switch (elementwise.cc).
namespace cpu {
void add_(Tensor& a, const Tensor& b);
void scale_(Tensor& a, double s);
}  // namespace cpu

}  // namespace sw::ops
