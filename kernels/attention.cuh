// Attention on CUDA behind core/ops/attention.h: the forward, cuBLAS strided-batched GEMMs
// around one fused softmax kernel with bias, mask and dropout. f32 (the parity mode) and
// bf16 storage; scores and softmax in f32.
#pragma once

#include "core/ops/attention.h"
#include "core/tensor/tensor.h"

namespace sw::kernels {

// As ops::attention; probs (optional) receives the softmax in f32 [B, H, Tq, Tk].
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 const ops::AttentionInputs& in, Tensor* probs);

}  // namespace sw::kernels
