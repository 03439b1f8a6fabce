// The attention sublayer's projections around ops::attention: self-attention (encoder,
// causal decoder) and cross-attention. HF layout: q, k, v [H*d_kv, d_model], o [d_model, H*d_kv].
#pragma once

#include "core/ops/attention.h"
#include "core/tensor/tensor.h"

namespace sw {

struct AttentionWeights {
  Tensor q, k, v, o;
};

// x [B, Tq, d] attends to memory [B, Tk, d] (memory = x for self-attention).
// attn.dropout applies to the probabilities.
Tensor attention_layer(const AttentionWeights& w, const Tensor& x, const Tensor& memory,
                       int64_t heads, const ops::AttentionInputs& attn);

}  // namespace sw
