#include "core/model/attention_layer.h"

#include "core/ops/elementwise.h"
#include "core/ops/gemm.h"

namespace sw {
namespace {

// cache [B, t, D] (or undefined) followed by step [B, 1, D]: [B, t + 1, D], on the step's
// device (row copies through views: the same code for every device).
Tensor append_position(const Tensor& cache, const Tensor& step) {
  const int64_t batch = step.dim(0), width = step.dim(2), t = cache.defined() ? cache.dim(1) : 0;
  Tensor out = Tensor::empty({batch, t + 1, width}, step.dtype(), step.device());
  const Tensor rows = out.view({batch * (t + 1), width});
  const Tensor steps = step.view({batch, width});
  const Tensor past = t ? cache.view({batch * t, width}) : Tensor();
  for (int64_t b = 0; b < batch; ++b) {
    if (t) rows.slice(b * (t + 1), b * (t + 1) + t).copy_from(past.slice(b * t, (b + 1) * t));
    rows.slice(b * (t + 1) + t, (b + 1) * (t + 1)).copy_from(steps.slice(b, b + 1));
  }
  return out;
}

}  // namespace

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

Tensor attention_step(const AttentionWeights& w, const Tensor& x, int64_t heads,
                      const ops::AttentionInputs& attn, Tensor& keys, Tensor& values, bool append) {
  const Tensor q = ops::linear(x, w.q);
  if (append) {
    keys = append_position(keys, ops::linear(x, w.k));
    values = append_position(values, ops::linear(x, w.v));
  }
  return ops::linear(ops::attention(q, keys, values, heads, attn), w.o);
}

}  // namespace sw
