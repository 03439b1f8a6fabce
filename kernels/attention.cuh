// Attention on CUDA behind core/ops/attention.h: cuBLAS strided-batched GEMMs per head
// around one fused softmax kernel with bias, mask and dropout, and the backward as four
// such GEMMs around one kernel for the score rows. f32 (the parity mode) and
// bf16 storage; scores and softmax in f32.
#pragma once

#include "core/ops/attention.h"
#include "core/tensor/tensor.h"

namespace sw::kernels {

// As ops::attention; probs (optional) receives the softmax in f32 [B, H, Tq, Tk].
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 const ops::AttentionInputs& in, Tensor* probs);

// As ops::attention_backward from the forward's f32 probs; dbias (with a bias) is f32
// [H, Tq, Tk], summed over the batch in batch order. The dropout mask is redrawn from
// in.dropout's stream, element (b, h, i, j) at its flat index as in the forward.
ops::AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                       const Tensor& v, const Tensor& probs, int64_t heads,
                                       const ops::AttentionInputs& in);

}  // namespace sw::kernels
