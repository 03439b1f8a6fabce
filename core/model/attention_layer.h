// The attention sublayer's projections around ops::attention: self-attention (encoder,
// causal decoder) and cross-attention. HF layout: q, k, v [H*d_kv, d_model], o [d_model, H*d_kv].
#pragma once

#include "core/ops/attention.h"
#include "core/tensor/tensor.h"

namespace sw {

struct AttentionWeights {
  Tensor q, k, v, o;
};

// What the backward needs from one attention sublayer's forward.
struct AttentionCache {
  Tensor q, k, v;  // [B, T, H*d_kv] projections
  Tensor probs;    // [B, H, Tq, Tk] softmax before dropout
  Tensor context;  // [B, Tq, H*d_kv] attention output before the o projection
};

// x [B, Tq, d] attends to memory [B, Tk, d] (memory = x for self-attention).
// attn.dropout applies to the probabilities. cache (optional) is filled for the backward.
Tensor attention_layer(const AttentionWeights& w, const Tensor& x, const Tensor& memory,
                       int64_t heads, const ops::AttentionInputs& attn,
                       AttentionCache* cache = nullptr);

// Backward from dy [B, Tq, d]: the gradients w.r.t. x (through q), memory (through k and
// v; for self-attention the caller adds both to x's) and, when attn.bias is set, the bias
// ([H, Tq, Tk]); the weight gradients are added to `grads`.
struct AttentionGradients {
  Tensor dx, dmemory, dbias;
};
AttentionGradients attention_layer_backward(const AttentionWeights& w, const Tensor& x,
                                            const Tensor& memory, int64_t heads,
                                            const ops::AttentionInputs& attn,
                                            const AttentionCache& cache, const Tensor& dy,
                                            AttentionWeights& grads);

// One decoding position: x [B, 1, d] attends to cached keys and values.
// Self-attention: `cached` positions are in keys and values [B, capacity, H*d_kv] (or
// undefined at the first step); x's own key and value join them at position `cached` (the
// capacity grows when full). Cross-attention: cached = -1, and keys and values [B, Te,
// H*d_kv] are the encoder output's, computed once.
Tensor attention_step(const AttentionWeights& w, const Tensor& x, int64_t heads,
                      const ops::AttentionInputs& attn, Tensor& keys, Tensor& values,
                      int64_t cached);

}  // namespace sw
