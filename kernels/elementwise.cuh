// Elementwise CUDA kernels behind core/ops (activations, residual adds, scaling) and dtype
// conversion. Storage f32 or bf16 (f64 for conversion), arithmetic in f32.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

// dst = src converted (f32 <-> bf16, f32 <-> f64); shapes equal, both on one device.
void convert(const Tensor& src, Tensor& dst);
// Splits f32 w into three bf16 tensors with w = hi + mid + lo to f32 precision: a GEMM
// of bf16-exact inputs against the three parts, accumulated in f32, is an f32 GEMM on
// the tensor cores.
void split_bf16x3(const Tensor& w, Tensor& hi, Tensor& mid, Tensor& lo);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);
Tensor gated_gelu(const Tensor& gate, const Tensor& linear);
void add_(Tensor& a, const Tensor& b);
void scale_(Tensor& a, double s);

}  // namespace sw::kernels
