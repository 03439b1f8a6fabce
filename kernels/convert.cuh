// Dtype conversion on CUDA: Tensor::to between f32 and bf16 or f64, and the three-way bf16
// split of f32 weights behind kernels/gemm.cc's f32-precision GEMM on the bf16 tensor cores.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

// dst = src converted (f32 <-> bf16, f32 <-> f64); shapes equal, both on one device.
void convert(const Tensor& src, Tensor& dst);
// Splits f32 w into three bf16 tensors with w = hi + mid + lo to f32 precision: a GEMM
// of bf16-exact inputs against the three parts, accumulated in f32, is an f32 GEMM on
// the tensor cores.
void split_bf16x3(const Tensor& w, Tensor& hi, Tensor& mid, Tensor& lo);

}  // namespace sw::kernels
