#include "core/model/attention_layer.h"

#include <algorithm>

#include "core/ops/elementwise.h"
#include "core/ops/gemm.h"

namespace sw {
namespace {

// Positions a decoding cache holds at first (then 32, 64, ...).
constexpr int64_t kFirstCacheCapacity = 16;

// Writes step [B, 1, D] at position `length` of cache [B, capacity, D] (undefined: none
// yet), on the step's device (row copies through views: the same code for every device).
// A full cache is moved to one of twice the capacity, so that a step costs one row per
// sequence and not a copy of everything cached so far.
void append_position(Tensor& cache, const Tensor& step, int64_t length) {
  const int64_t batch = step.dim(0), width = step.dim(2);
  const int64_t capacity = cache.defined() ? cache.dim(1) : 0;
  if (length == capacity) {
    const int64_t grown = std::max<int64_t>(2 * capacity, kFirstCacheCapacity);
    Tensor bigger = Tensor::empty({batch, grown, width}, step.dtype(), step.device());
    const Tensor to = bigger.view({batch * grown, width});
    for (int64_t b = 0; b < batch && length; ++b)
      to.slice(b * grown, b * grown + length)
          .copy_from(
              cache.view({batch * capacity, width}).slice(b * capacity, b * capacity + length));
    cache = bigger;
  }
  const int64_t stride = cache.dim(1);
  const Tensor rows = cache.view({batch * stride, width});
  const Tensor steps = step.view({batch, width});
  for (int64_t b = 0; b < batch; ++b)
    rows.slice(b * stride + length, b * stride + length + 1).copy_from(steps.slice(b, b + 1));
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
                      const ops::AttentionInputs& attn, Tensor& keys, Tensor& values,
                      int64_t cached) {
  const Tensor q = ops::linear(x, w.q);
  if (cached < 0) return ops::linear(ops::attention(q, keys, values, heads, attn), w.o);
  append_position(keys, ops::linear(x, w.k), cached);
  append_position(values, ops::linear(x, w.v), cached);
  ops::AttentionInputs self = attn;
  self.key_length = cached + 1;
  return ops::linear(ops::attention(q, keys, values, heads, self), w.o);
}

}  // namespace sw
