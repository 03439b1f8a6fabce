// Softmax family over the last dimension, computed stably (max subtracted). Any leading
// shape; f32/f64 on the cpu, f32/bf16 storage with f32 arithmetic on a GPU (attention and
// the router's forward fuse their own).
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

Tensor softmax(const Tensor& x);
void softmax_(Tensor& x);  // in place
// logsumexp over the last dimension: [..., n] -> [...], accumulated in x's dtype.
Tensor logsumexp(const Tensor& x);

// Backward of p = softmax(x) from p and dp: dx = p * (dp - sum(dp * p)) per row.
Tensor softmax_backward(const Tensor& dp, const Tensor& p);

// The Eigen implementations behind the device switch (softmax.cc).
namespace cpu {
void softmax_(Tensor& x);
Tensor logsumexp(const Tensor& x);
Tensor softmax_backward(const Tensor& dp, const Tensor& p);
}  // namespace cpu

}  // namespace sw::ops
