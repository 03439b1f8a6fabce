#include "core/model/attention_layer.h"

#include "core/ops/elementwise.h"
#include "core/ops/gemm.h"

namespace sw {

Tensor attention_layer(const AttentionWeights& w, const Tensor& x, const Tensor& memory,
                       int64_t heads, const ops::AttentionInputs& attn, AttentionCache* cache) {
  const Tensor q = ops::linear(x, w.q);
  const Tensor k = ops::linear(memory, w.k);
  const Tensor v = ops::linear(memory, w.v);
  Tensor probs;
  const Tensor context = ops::attention(q, k, v, heads, attn, cache ? &probs : nullptr);
  if (cache) *cache = {q, k, v, probs, context};
  return ops::linear(context, w.o);
}

AttentionGradients attention_layer_backward(const AttentionWeights& w, const Tensor& x,
                                            const Tensor& memory, int64_t heads,
                                            const ops::AttentionInputs& attn,
                                            const AttentionCache& cache, const Tensor& dy,
                                            AttentionWeights& grads) {
  ops::linear_backward_weight(dy, cache.context, grads.o, true);
  const Tensor d_context = ops::linear_backward_input(dy, w.o);
  const ops::AttentionGrads g =
      ops::attention_backward(d_context, cache.q, cache.k, cache.v, cache.probs, heads, attn);
  ops::linear_backward_weight(g.dq, x, grads.q, true);
  ops::linear_backward_weight(g.dk, memory, grads.k, true);
  ops::linear_backward_weight(g.dv, memory, grads.v, true);
  AttentionGradients out;
  out.dx = ops::linear_backward_input(g.dq, w.q);
  out.dmemory = ops::linear_backward_input(g.dk, w.k);
  ops::add_(out.dmemory, ops::linear_backward_input(g.dv, w.v));
  out.dbias = g.dbias;
  return out;
}

}  // namespace sw
