#include "core/model/block.h"

#include "core/ops/dropout.h"
#include "core/ops/elementwise.h"
#include "core/ops/norm.h"
#include "core/ops/storage.h"

namespace sw {
namespace {

// The random sites and dropout specs of block `index` in a pass.
struct BlockSites {
  const StackPass& pass;
  int64_t index;
  uint32_t site(SiteKind kind) const {
    return random_site(static_cast<int>(pass.stack), index, kind);
  }
  ops::DropoutSpec dropout(SiteKind kind) const {
    return pass.ctx->dropout(site(kind), pass.config->dropout_rate());
  }
  // Dropout on this rank's part of a tensor whose rows are split over the model group.
  ops::DropoutSpec dropout_part(SiteKind kind, int64_t width) const {
    return pass.ctx->dropout_part(dropout(kind), width);
  }
  SwitchSites switch_sites() const {
    return {site(SiteKind::kRouterJitter), site(SiteKind::kFeedForwardInner),
            static_cast<int64_t>(pass.ctx->first_example) * pass.length};
  }
  ops::AttentionInputs self_attention() const {
    ops::AttentionInputs in;
    in.bias = pass.bias;
    in.key_mask = pass.mask;
    in.causal = pass.stack == Stack::kDecoder;
    in.dropout =
        dropout_part(SiteKind::kSelfAttentionProbs, pass.heads * pass.length * pass.length);
    return in;
  }
  ops::AttentionInputs cross_attention() const {
    ops::AttentionInputs in;
    in.key_mask = pass.memory_mask;
    in.dropout =
        dropout_part(SiteKind::kCrossAttentionProbs, pass.heads * pass.length * pass.memory_length);
    return in;
  }
};

AttentionWeights gradients_of(const AttentionWeights& w, GradientBuffer& grads) {
  return AttentionWeights{grads.of(w.q), grads.of(w.k), grads.of(w.v), grads.of(w.o)};
}

// A parameter's gradient slot, or undefined for an absent weight.
Tensor gradient_or_none(const Tensor& w, GradientBuffer& grads) {
  return w.defined() ? grads.of(w) : Tensor();
}

FeedForwardWeights gradients_of(const FeedForwardWeights& w, GradientBuffer& grads) {
  return {gradient_or_none(w.wi, grads), gradient_or_none(w.wi_0, grads),
          gradient_or_none(w.wi_1, grads), grads.of(w.wo)};
}

}  // namespace

void block_forward(const BlockWeights& b, int64_t index, const StackPass& pass, Tensor& h,
                   RoutingLosses& losses, std::vector<LayerRouting>& routing, BlockCache* c) {
  const BlockSites at{pass, index};
  const RunContext& ctx = *pass.ctx;
  const ModelConfig& config = *pass.config;
  const double eps = config.norm_epsilon();
  const int64_t batch = pass.batch, length = pass.length, d = config.d_model();
  // Self-attention sublayer.
  if (c) c->self_input = h.clone();
  Tensor normed = ops::rms_norm(h, b.self_norm, eps, c ? &c->self_inv_rms : nullptr);
  if (c) c->self_normed = normed;
  Tensor y = attention_layer(b.self_attn, normed, normed, pass.heads, at.self_attention(),
                             c ? &c->self : nullptr);
  ctx.reduce_partial(y);
  ops::dropout_(y, at.dropout(SiteKind::kSelfAttentionOut));
  ops::add_(h, y);
  // Cross-attention sublayer (decoder).
  if (pass.stack == Stack::kDecoder) {
    if (c) c->cross_input = h.clone();
    normed = ops::rms_norm(h, b.cross_norm, eps, c ? &c->cross_inv_rms : nullptr);
    if (c) c->cross_normed = normed;
    y = attention_layer(b.cross_attn, normed, *pass.memory, pass.heads, at.cross_attention(),
                        c ? &c->cross : nullptr);
    ctx.reduce_partial(y);
    ops::dropout_(y, at.dropout(SiteKind::kCrossAttentionOut));
    ops::add_(h, y);
  }
  // Feed-forward sublayer: dense or Switch.
  if (c) c->ffn_input = h.clone();
  normed =
      ops::rms_norm(h, b.ffn_norm, eps, c ? &c->ffn_inv_rms : nullptr).view({batch * length, d});
  if (c) c->ffn_normed = normed;
  if (!b.sparse) {
    y = feed_forward(b.ffn, config.activation(), normed,
                     at.dropout_part(SiteKind::kFeedForwardInner, pass.d_ff),
                     c ? &c->ffn : nullptr);
    ctx.reduce_partial(y);
  } else {
    const int64_t group_size = routing_group_size(pass.routing_config, batch, length);
    SwitchOutput sw = switch_ffn(b.switch_ffn, pass.routing_config, normed, group_size, ctx,
                                 at.switch_sites(), pass.expert_group);
    losses.add_layer(pass.stack, index, sw, group_size, routing);
    y = sw.y;
    if (c) {
      c->switch_out = std::move(sw);
      c->group_size = group_size;
    }
  }
  y = y.view({batch, length, d});
  ops::dropout_(y, at.dropout(SiteKind::kFeedForwardOut));
  ops::add_(h, y);
}

void block_backward(const BlockWeights& b, int64_t index, const StackPass& pass,
                    const BlockCache& c, const LossScales& scales, Tensor& dh,
                    GradientBuffer& grads, Tensor& d_bias, Tensor& d_memory) {
  const BlockSites at{pass, index};
  const RunContext& ctx = *pass.ctx;
  const ModelConfig& config = *pass.config;
  const int64_t d = config.d_model();
  // Feed-forward sublayer: h += dropout(ffn(norm(h))). Dropout is linear with a fixed mask:
  // its backward applies the same spec to the gradient.
  Tensor dy = dh.clone();
  ops::dropout_(dy, at.dropout(SiteKind::kFeedForwardOut));
  dy = dy.view({pass.batch * pass.length, d});
  Tensor d_normed;
  if (!b.sparse) {
    FeedForwardWeights g = gradients_of(b.ffn, grads);
    d_normed = feed_forward_backward(b.ffn, config.activation(), c.ffn_normed,
                                     at.dropout_part(SiteKind::kFeedForwardInner, pass.d_ff), c.ffn,
                                     dy, g);
    ctx.reduce_partial(d_normed);
  } else {
    SwitchGradients g;
    g.router = grads.of(b.switch_ffn.router);
    g.experts = gradients_of(b.switch_ffn.experts, grads);
    d_normed = switch_ffn_backward(b.switch_ffn, config, c.ffn_normed, c.switch_out, dy, scales.aux,
                                   scales.z, c.group_size, ctx, at.switch_sites(), g);
  }
  ops::add_(dh, ops::rms_norm_backward(d_normed.view(dh.shape()), c.ffn_input, b.ffn_norm,
                                       c.ffn_inv_rms, grads.of(b.ffn_norm)));
  // Cross-attention sublayer (decoder): h += dropout(attn(norm(h), memory)).
  if (pass.stack == Stack::kDecoder) {
    dy = dh.clone();
    ops::dropout_(dy, at.dropout(SiteKind::kCrossAttentionOut));
    AttentionWeights g = gradients_of(b.cross_attn, grads);
    AttentionGradients a =
        attention_layer_backward(b.cross_attn, c.cross_normed, *pass.memory, pass.heads,
                                 at.cross_attention(), c.cross, dy, g);
    ops::add_(d_memory, a.dmemory);  // a partial sum under mp, completed by the stack
    ctx.reduce_partial(a.dx);
    ops::add_(dh, ops::rms_norm_backward(a.dx, c.cross_input, b.cross_norm, c.cross_inv_rms,
                                         grads.of(b.cross_norm)));
  }
  // Self-attention sublayer: h += dropout(attn(norm(h))), keys and values from norm(h) too.
  dy = dh.clone();
  ops::dropout_(dy, at.dropout(SiteKind::kSelfAttentionOut));
  AttentionWeights g = gradients_of(b.self_attn, grads);
  const AttentionGradients a = attention_layer_backward(
      b.self_attn, c.self_normed, c.self_normed, pass.heads, at.self_attention(), c.self, dy, g);
  {
    const ops::Bf16Storage f32_gradient(false);  // the position bias's, summed in f32
    ops::add_(d_bias, a.dbias);
  }
  Tensor d_self_normed = a.dx;
  ops::add_(d_self_normed, a.dmemory);
  ctx.reduce_partial(d_self_normed);
  ops::add_(dh, ops::rms_norm_backward(d_self_normed, c.self_input, b.self_norm, c.self_inv_rms,
                                       grads.of(b.self_norm)));
}

void block_decode(const BlockWeights& b, int64_t index, const StackPass& pass, int64_t position,
                  Tensor& h, BlockCache& cache, std::vector<LayerRouting>& routing) {
  const BlockSites at{pass, index};
  const RunContext& ctx = *pass.ctx;
  const ModelConfig& config = *pass.config;
  const double eps = config.norm_epsilon();
  const int64_t batch = pass.batch, d = config.d_model();
  ops::AttentionInputs self;
  self.bias = pass.bias;
  Tensor y = attention_step(b.self_attn, ops::rms_norm(h, b.self_norm, eps), pass.heads, self,
                            cache.self_k, cache.self_v, position);
  ctx.reduce_partial(y);
  ops::add_(h, y);
  ops::AttentionInputs cross;
  cross.key_mask = pass.memory_mask;
  y = attention_step(b.cross_attn, ops::rms_norm(h, b.cross_norm, eps), pass.heads, cross,
                     cache.cross_k, cache.cross_v, /*cached=*/-1);
  ctx.reduce_partial(y);
  ops::add_(h, y);
  const Tensor normed = ops::rms_norm(h, b.ffn_norm, eps).view({batch, d});
  if (!b.sparse) {
    y = feed_forward(b.ffn, config.activation(), normed, ctx.dropout(0, 0.0));
    ctx.reduce_partial(y);
  } else {
    const int64_t group_size = routing_group_size(pass.routing_config, batch, 1);
    const SwitchOutput sw = switch_ffn(b.switch_ffn, pass.routing_config, normed, group_size, ctx,
                                       at.switch_sites(), pass.expert_group);
    routing.push_back(layer_routing(Stack::kDecoder, index, sw, group_size));
    y = sw.y;
  }
  ops::add_(h, y.view({batch, 1, d}));
}

}  // namespace sw
