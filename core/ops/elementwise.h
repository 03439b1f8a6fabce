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
// Each f32 value of a rounded to the nearest bf16 (ties to even; NaN stays NaN), kept in
// f32: what a bf16 store of an f32 result keeps (core/ops/storage.h). f32 only.
void round_to_bf16_(Tensor& a);

// The Eigen implementations behind the device switch (elementwise.cc).
namespace cpu {
void add_(Tensor& a, const Tensor& b);
void scale_(Tensor& a, double s);
void round_to_bf16_(Tensor& a);
}  // namespace cpu

}  // namespace sw::ops
