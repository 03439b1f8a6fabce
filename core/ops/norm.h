// RMSNorm (T5's LayerNorm, docs/MATH.md §1): y = w * x * rsqrt(mean(x^2) + eps), no mean, no bias.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

// x [..., d], weight [d], same dtype (f32/f64 on the cpu; f32/bf16 on a GPU). The mean of
// squares accumulates in at least f32. When inv_rms is given it receives
// rsqrt(mean(x^2) + eps) per row, [rows] (f32 on a GPU), for the backward.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor* inv_rms = nullptr);

// Backward from the forward's x, weight and inv_rms: returns dx [..., d]; dweight [d]
// accumulates sum over rows of dy * x * inv_rms.
Tensor rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& inv_rms, Tensor& dweight);

// The Eigen implementations behind the device switch (norm.cc); arguments checked there.
namespace cpu {
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor* inv_rms);
Tensor rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& inv_rms, Tensor& dweight);
}  // namespace cpu

}  // namespace sw::ops
