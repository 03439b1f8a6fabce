// RMSNorm on CUDA behind core/ops/norm.h: the forward, one block per row. f32 (the parity
// mode) and bf16 storage, accumulated in f32.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

// x [rows, d], weight [d]; inv_rms (optional) receives f32 [rows].
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor* inv_rms);

}  // namespace sw::kernels
