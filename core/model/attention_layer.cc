#include "core/model/attention_layer.h"

#include "core/ops/gemm.h"

namespace sw {

Tensor attention_layer(const AttentionWeights& w, const Tensor& x, const Tensor& memory,
                       int64_t heads, const ops::AttentionInputs& attn) {
  const Tensor q = ops::linear(x, w.q);
  const Tensor k = ops::linear(memory, w.k);
  const Tensor v = ops::linear(memory, w.v);
  return ops::linear(ops::attention(q, k, v, heads, attn), w.o);
}

}  // namespace sw
