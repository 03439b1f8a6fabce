// Scaled-dot-product attention without the 1/sqrt(d_kv) (T5 folds it into q's init,
// docs/MATH.md §1). f32/f64 on the cpu; f32/bf16 on a GPU with the softmax in f32.
#pragma once

#include "core/ops/dropout.h"
#include "core/tensor/tensor.h"

namespace sw::ops {

struct AttentionInputs {
  const Tensor* bias = nullptr;      // [H, Tq, Tk] position bias (f32 on a GPU), or null
  const Tensor* key_mask = nullptr;  // i32 [B, Tk], 1 = attend, 0 = padding; or null
  bool causal = false;               // key j > query i masked (decoder self-attention)
  DropoutSpec dropout;               // on the attention probabilities (training)
  // Decoding caches: only the first key_length positions of k and v are keys, the rest
  // unused capacity (-1: all of them). Tk below is key_length. Forward only.
  int64_t key_length = -1;
};

// q [B, Tq, H*dk], k and v [B, Tk, H*dk] -> [B, Tq, H*dk]. scores = q k^T + bias + mask,
// mask = lowest f32 where masked (as HF), softmax in the compute dtype. When probs is
// given it receives the softmax output [B, H, Tq, Tk] (before dropout).
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 const AttentionInputs& in, Tensor* probs = nullptr);

struct AttentionGrads {
  Tensor dq, dk, dv;  // like q, k, v
  Tensor dbias;       // [H, Tq, Tk] (f32 on a GPU), summed over the batch (with a bias)
};

// Backward from dout [B, Tq, H*dk], the forward's q, k, v and its probs (the softmax,
// before dropout); the dropout mask is rebuilt from in.dropout's stream.
AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& probs, int64_t heads,
                                  const AttentionInputs& in);

// The Eigen implementations behind the device switch (attention.cc).
namespace cpu {
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 const AttentionInputs& in, Tensor* probs);
AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& probs, int64_t heads,
                                  const AttentionInputs& in);
}  // namespace cpu

}  // namespace sw::ops
