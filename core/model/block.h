// One T5 block (docs/MATH.md §1): pre-norm sublayers h = h + dropout(F(norm(h))) — self-attention,
// cross-attention (decoder), then a dense or Switch feed-forward — with its forward, its
// backward and one decoding step, all three over the same weights and one cache type.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dist/communicator.h"
#include "core/model/attention_layer.h"
#include "core/model/config.h"
#include "core/model/feed_forward.h"
#include "core/model/parameters.h"
#include "core/model/run_context.h"
#include "core/model/switch_ffn.h"
#include "core/tensor/tensor.h"

namespace sw {

struct BlockWeights {
  Tensor self_norm;
  AttentionWeights self_attn;
  Tensor cross_norm;  // decoder only
  AttentionWeights cross_attn;
  Tensor ffn_norm;
  bool sparse = false;
  FeedForwardWeights ffn;    // dense blocks
  SwitchWeights switch_ffn;  // sparse blocks
};

// What a block keeps between calls: the forward's activations for the backward, or, while
// decoding, the keys and values of every position fed so far.
struct BlockCache {
  Tensor self_input, self_inv_rms, self_normed;
  AttentionCache self;
  Tensor cross_input, cross_inv_rms, cross_normed;
  AttentionCache cross;
  Tensor ffn_input, ffn_inv_rms, ffn_normed;
  FeedForwardCache ffn;
  SwitchOutput switch_out;
  int64_t group_size = 0;
  // Decoding (core/model/decoding.cc).
  Tensor self_k, self_v;    // [B, capacity, H*d_kv], the first DecoderState::length filled
  Tensor cross_k, cross_v;  // [B, Te, H*d_kv], computed once from the encoder's output
};

// Weights of the loss terms in a gradient: 1 each for loss = ce + aux + z. Accumulating
// micro-batches weighs each one's means by its share of the whole batch's label tokens
// (ce), routing groups (aux) and routed tokens (z).
struct LossScales {
  double ce = 1.0, aux = 1.0, z = 1.0;
};

// What every block of one pass through a stack shares.
struct StackPass {
  const ModelConfig* config = nullptr;
  ModelConfig routing_config;  // the Switch layers' (the model's, or dropless)
  Stack stack = Stack::kEncoder;
  const RunContext* ctx = nullptr;
  int64_t heads = 0, d_ff = 0;  // held by this rank (model parallelism splits them)
  Communicator* expert_group = nullptr;
  int64_t batch = 0, length = 0, memory_length = 0;
  const Tensor* bias = nullptr;         // [H, Tq, Tk] position bias (self-attention)
  const Tensor* mask = nullptr;         // this stack's padding mask
  const Tensor* memory = nullptr;       // encoder output (decoder only)
  const Tensor* memory_mask = nullptr;  // encoder padding mask (decoder only)
};

// h [B, T, d] <- the block applied to h. Sparse blocks record their routing (and loss
// terms) in `losses`; `cache` (optional) keeps what the backward needs.
void block_forward(const BlockWeights& b, int64_t index, const StackPass& pass, Tensor& h,
                   RoutingLosses& losses, std::vector<LayerRouting>& routing,
                   BlockCache* cache = nullptr);

// Backward from dh (the gradient w.r.t. the block's output) to its input's, in place. The
// parameter gradients accumulate in `grads`, the position bias's in d_bias ([H, T, T]) and
// the encoder output's in d_memory (decoder; a partial sum under model parallelism).
void block_backward(const BlockWeights& b, int64_t index, const StackPass& pass,
                    const BlockCache& cache, const LossScales& scales, Tensor& dh,
                    GradientBuffer& grads, Tensor& d_bias, Tensor& d_memory);

// One decoding step of a decoder block (eval): h [B, 1, d] at `position` attends to the
// keys and values cached for positions [0, position) and its own, which joins the cache;
// pass.bias is this query's row [H, 1, position + 1].
void block_decode(const BlockWeights& b, int64_t index, const StackPass& pass, int64_t position,
                  Tensor& h, BlockCache& cache, std::vector<LayerRouting>& routing);

}  // namespace sw
