// RMSNorm on CUDA behind core/ops/norm.h: the forward and the backward, one block per row;
// the weight gradient summed over rows in a fixed order (no atomics: the same bits every
// run). f32 (the parity mode) and bf16 storage, accumulated in f32.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

// x [rows, d], weight [d]; inv_rms (optional) receives f32 [rows].
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor* inv_rms);
// dx from dy, the forward's x, weight and f32 inv_rms [rows]; dweight [d] += sum over rows
// of dy * x * inv_rms.
Tensor rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& inv_rms, Tensor& dweight);

}  // namespace sw::kernels
