#include "core/model/switch_transformer.h"

#include <cmath>
#include <cstring>
#include <string>

#include "core/ops/elementwise.h"
#include "core/ops/embedding.h"
#include "core/ops/gemm.h"
#include "core/ops/loss.h"
#include "core/ops/norm.h"
#include "core/ops/position_bias.h"

namespace sw {
namespace {

InitRule ones() { return InitRule{InitRule::Kind::kOnes}; }

// A weight read with fan-in `fan_in` (paper scheme) or plain normal `hf_std` (HF scheme).
InitRule weight(int64_t fan_in, double hf_std, double extra_scale = 1.0) {
  InitRule r;
  r.fan_in = fan_in;
  r.hf_std = hf_std;
  r.extra_scale = extra_scale;
  return r;
}

// The config the Switch layers route with: the model's, or with no capacity limit
// (inference's dropless option).
ModelConfig routing_config_for(const ModelConfig& config, bool dropless) {
  ModelConfig c = config;
  if (dropless) c.set_capacity_mode(ModelConfig::CAPACITY_DROPLESS);
  return c;
}

void check_ids(const Tensor& t, const char* what) {
  SW_CHECK_ARG(t.defined(), what, ": missing");
  SW_CHECK_ARG(t.ndim() == 2 && t.dim(0) >= 1 && t.dim(1) >= 1, what,
               ": expected a non-empty [batch, length] tensor, got ", t.str());
  check_dtype(t, DType::i32, what);
}

void check_mask(const Tensor& mask, const Tensor& ids, const char* what) {
  if (!mask.defined()) return;
  check_shape(mask, ids.shape(), what);
  check_dtype(mask, DType::i32, what);
  const int32_t* p = mask.data<int32_t>();
  for (int64_t i = 0; i < mask.numel(); ++i)
    SW_CHECK_ARG(p[i] == 0 || p[i] == 1, what, ": values must be 0 or 1, got ", p[i],
                 " at flat position ", i);
}

}  // namespace

SwitchTransformer::SwitchTransformer(const ModelConfig& config, uint64_t seed, DType dtype,
                                     Device device, Communicator* expert_group,
                                     Communicator* model_group)
    : config_(config),
      seed_(seed),
      dtype_(dtype),
      device_(device),
      expert_group_(expert_group && expert_group->size() > 1 ? expert_group : nullptr),
      model_group_(model_group && model_group->size() > 1 ? model_group : nullptr) {
  validate(config_);
  heads_ = config_.num_heads();
  d_ff_ = config_.d_ff();
  if (model_group_) {
    const int n = model_group_->size();
    SW_CHECK(!expert_group_, Status::kUnsupported,
             "model parallelism together with expert parallelism is not supported in this "
             "version (use mp with dp, or ep with dp)");
    SW_CHECK(device.is_cpu(), Status::kUnsupported,
             "model parallelism runs on the CPU path in this version");
    SW_CHECK_ARG(heads_ % n == 0, "model parallelism: num_heads ", heads_, " does not split over ",
                 n, " ranks");
    SW_CHECK_ARG(d_ff_ % n == 0, "model parallelism: d_ff ", d_ff_, " does not split over ", n,
                 " ranks");
    heads_ /= n;
    d_ff_ /= n;
  }
  if (device.is_cpu())
    SW_CHECK(dtype == DType::f32 || dtype == DType::f64, Status::kUnsupported, "model dtype ",
             dtype_name(dtype), ": the cpu model runs in f32 or f64");
  else
    SW_CHECK(dtype == DType::f32 || dtype == DType::bf16, Status::kUnsupported, "model dtype ",
             dtype_name(dtype), ": a GPU model runs in f32 (parity) or bf16");
  build_parameters();
  initialize(params_, config_.init_scheme(), config_.init_scale(), seed_);
}

void SwitchTransformer::build_parameters() {
  const int64_t d = config_.d_model(), vocab = config_.vocab_size();
  InitRule embedding_rule;
  embedding_rule.unit_scale = true;
  embedding_rule.hf_std = 1.0;
  shared_ =
      params_.add("shared.weight", Tensor::empty({vocab, d}, dtype_, device_), embedding_rule);
  encoder_ = build_stack(Stack::kEncoder);
  decoder_ = build_stack(Stack::kDecoder);
  if (!config_.tie_word_embeddings())
    lm_head_ =
        params_.add("lm_head.weight", Tensor::empty({vocab, d}, dtype_, device_), weight(d, 1.0));
}

SwitchTransformer::StackWeights SwitchTransformer::build_stack(Stack stack) {
  const int64_t d = config_.d_model(), d_ff = config_.d_ff(), heads = config_.num_heads();
  const int64_t inner = heads * config_.d_kv(), experts = config_.num_experts();
  const double d_inv_sqrt = 1.0 / std::sqrt(static_cast<double>(d));
  const bool gated = config_.activation() == ModelConfig::GATED_GELU;
  // Under model parallelism the first projections are split by rows (axis 0), the second
  // by columns (axis 1); the init rules keep the whole tensor's fan-in.
  const int parts = model_group_ ? model_group_->size() : 1;
  const int part = model_group_ ? model_group_->rank() : 0;
  auto add = [&](const std::string& name, Shape shape, const InitRule& rule, int split_axis = -1) {
    // The router runs in f32 whatever the model's dtype (SPEC §2).
    const bool router = name.find(".router.") != std::string::npos;
    const Split split{parts > 1 ? split_axis : -1, parts, part};
    if (!split.whole()) shape[split.axis] /= parts;
    return params_.add(
        name, Tensor::empty(shape, router && dtype_ == DType::bf16 ? DType::f32 : dtype_, device_),
        rule, split);
  };
  // q carries T5's missing 1/sqrt(d_kv) in its init (SPEC §1).
  auto attention = [&](const std::string& prefix) {
    AttentionWeights w;
    w.q = add(prefix + ".q.weight", {inner, d},
              weight(d, 1.0 / std::sqrt(static_cast<double>(d * config_.d_kv())),
                     1.0 / std::sqrt(static_cast<double>(config_.d_kv()))),
              0);
    w.k = add(prefix + ".k.weight", {inner, d}, weight(d, d_inv_sqrt), 0);
    w.v = add(prefix + ".v.weight", {inner, d}, weight(d, d_inv_sqrt), 0);
    w.o = add(prefix + ".o.weight", {d, inner},
              weight(inner, 1.0 / std::sqrt(static_cast<double>(inner))), 1);
    return w;
  };

  StackWeights s;
  s.stack = stack;
  const std::string stack_prefix = stack_name(stack);
  const int64_t layers = num_layers(config_, stack);
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = stack_prefix + ".block." + std::to_string(i) + ".layer.";
    Block b;
    b.self_attn = attention(p + "0.SelfAttention");
    if (i == 0)
      s.relative_bias =
          add(p + "0.SelfAttention.relative_attention_bias.weight",
              {config_.relative_attention_num_buckets(), heads}, weight(d, d_inv_sqrt));
    b.self_norm = add(p + "0.layer_norm.weight", {d}, ones());
    int ffn_layer = 1;
    if (stack == Stack::kDecoder) {
      b.cross_attn = attention(p + "1.EncDecAttention");
      b.cross_norm = add(p + "1.layer_norm.weight", {d}, ones());
      ffn_layer = 2;
    }
    const std::string mlp = p + std::to_string(ffn_layer) + ".mlp.";
    b.sparse = is_sparse_block(config_, stack, i);
    if (!b.sparse) {
      const InitRule in_rule = weight(d, d_inv_sqrt),
                     out_rule = weight(d_ff, 1.0 / std::sqrt(static_cast<double>(d_ff)));
      if (gated) {
        b.ffn.wi_0 = add(mlp + "wi_0.weight", {d_ff, d}, in_rule, 0);
        b.ffn.wi_1 = add(mlp + "wi_1.weight", {d_ff, d}, in_rule, 0);
      } else {
        b.ffn.wi = add(mlp + "wi.weight", {d_ff, d}, in_rule, 0);
      }
      b.ffn.wo = add(mlp + "wo.weight", {d, d_ff}, out_rule, 1);
    } else {
      b.switch_ffn.router = add(mlp + "router.classifier.weight", {experts, d}, weight(d, 1.0));
      // Each projection is one [E, rows, cols] tensor (for the batched GEMM); every expert's
      // slice is registered under its HF name.
      // With expert parallelism only this rank's experts are held (the others' init
      // sites are skipped, so every expert starts as in a single process).
      const ExpertShard shard =
          expert_group_ ? expert_shard(experts, expert_group_->rank(), expert_group_->size())
                        : ExpertShard{0, experts};
      // Under model parallelism each expert's d_ff is split like a dense feed-forward's.
      auto expert_tensor = [&](const std::string& proj, int64_t rows, int64_t cols, int64_t fan_in,
                               int split_axis) {
        const Split split{parts > 1 ? split_axis : -1, parts, part};
        if (!split.whole()) (split.axis == 0 ? rows : cols) /= parts;
        Tensor local = Tensor::empty({shard.count, rows, cols}, dtype_, device_);
        for (int64_t e = 0; e < experts; ++e) {
          const int64_t j = e - shard.first;
          if (j < 0 || j >= shard.count) {
            params_.skip();
            continue;
          }
          params_.add(mlp + "experts.expert_" + std::to_string(e) + "." + proj + ".weight",
                      local.slice(j, j + 1).view({rows, cols}), weight(fan_in, d_inv_sqrt), split);
        }
        return local;
      };
      FeedForwardWeights& ex = b.switch_ffn.experts;
      if (gated) {
        ex.wi_0 = expert_tensor("wi_0", d_ff, d, d, 0);
        ex.wi_1 = expert_tensor("wi_1", d_ff, d, d, 0);
      } else {
        ex.wi = expert_tensor("wi", d_ff, d, d, 0);
      }
      ex.wo = expert_tensor("wo", d, d_ff, d_ff, 1);
    }
    b.ffn_norm = add(p + std::to_string(ffn_layer) + ".layer_norm.weight", {d}, ones());
    s.blocks.push_back(std::move(b));
  }
  s.final_norm = add(stack_prefix + ".final_layer_norm.weight", {d}, ones());
  return s;
}

void SwitchTransformer::validate_batch(const Batch& b) const {
  check_ids(b.input_ids, "input_ids");
  check_ids(b.decoder_input_ids, "decoder_input_ids");
  SW_CHECK_ARG(b.decoder_input_ids.dim(0) == b.input_ids.dim(0), "decoder_input_ids: batch size ",
               b.decoder_input_ids.dim(0), " differs from input_ids' ", b.input_ids.dim(0));
  ops::check_token_ids(b.input_ids, config_.vocab_size(), "input_ids");
  ops::check_token_ids(b.decoder_input_ids, config_.vocab_size(), "decoder_input_ids");
  check_mask(b.attention_mask, b.input_ids, "attention_mask");
  check_mask(b.decoder_attention_mask, b.decoder_input_ids, "decoder_attention_mask");
  if (b.labels.defined()) {
    check_shape(b.labels, b.decoder_input_ids.shape(), "labels");
    check_dtype(b.labels, DType::i32, "labels");
  }
}

Tensor SwitchTransformer::position_bias_for(const StackWeights& s, int64_t length) const {
  // Computed on the host (a tiny table lookup), in f32 for a GPU model.
  const Tensor table =
      device_.is_cpu() ? s.relative_bias : s.relative_bias.to(Device::cpu()).to(DType::f32);
  Tensor bias = ops::position_bias(table, length, length, s.stack == Stack::kEncoder,
                                   config_.relative_attention_max_distance());
  if (model_group_) {  // this rank's heads
    const int64_t first = model_group_->rank() * heads_;
    bias = bias.slice(first, first + heads_);
  }
  return device_.is_cpu() ? bias : bias.to(device_);
}

RunContext SwitchTransformer::context(bool train, uint64_t step) const {
  RunContext ctx;
  ctx.train = train;
  ctx.seed = seed_;
  ctx.step = step;
  ctx.model_group = model_group_;
  return ctx;
}

Tensor SwitchTransformer::run_stack(const StackWeights& s, const StackInputs& in,
                                    const RunContext& ctx, ForwardOutput& out,
                                    StackCache* cache) const {
  const int st = static_cast<int>(s.stack);
  const bool decoder = s.stack == Stack::kDecoder;
  const int64_t batch = in.ids->dim(0), length = in.ids->dim(1), d = config_.d_model();
  const int64_t heads = heads_;
  const int64_t memory_length = decoder ? in.memory->dim(1) : 0;
  const double eps = config_.norm_epsilon(), rate = config_.dropout_rate();
  const ModelConfig routing_config = routing_config_for(config_, ctx.dropless);

  Tensor h = ops::embedding(shared_, *in.ids);
  ops::dropout_(h, ctx.dropout(random_site(st, 0, SiteKind::kEmbedding), rate));
  const Tensor bias = position_bias_for(s, length);

  RoutingLosses losses(config_, batch, out.aux_loss, out.z_loss);

  if (cache) cache->blocks.assign(s.blocks.size(), BlockCache{});
  for (size_t i = 0; i < s.blocks.size(); ++i) {
    const Block& b = s.blocks[i];
    const int64_t blk = static_cast<int64_t>(i);
    BlockCache* c = cache ? &cache->blocks[i] : nullptr;
    // Self-attention sublayer.
    ops::AttentionInputs self;
    self.bias = &bias;
    self.key_mask = in.mask;
    self.causal = decoder;
    self.dropout =
        ctx.dropout_part(ctx.dropout(random_site(st, blk, SiteKind::kSelfAttentionProbs), rate),
                         heads * length * length);
    if (c) c->self_input = h.clone();
    Tensor normed = ops::rms_norm(h, b.self_norm, eps, c ? &c->self_inv_rms : nullptr);
    if (c) c->self_normed = normed;
    Tensor y = attention_layer(b.self_attn, normed, normed, heads, self, c ? &c->self : nullptr);
    ctx.reduce_partial(y);
    ops::dropout_(y, ctx.dropout(random_site(st, blk, SiteKind::kSelfAttentionOut), rate));
    ops::add_(h, y);
    // Cross-attention sublayer (decoder).
    if (decoder) {
      ops::AttentionInputs cross;
      cross.key_mask = in.memory_mask;
      cross.dropout =
          ctx.dropout_part(ctx.dropout(random_site(st, blk, SiteKind::kCrossAttentionProbs), rate),
                           heads * length * memory_length);
      if (c) c->cross_input = h.clone();
      normed = ops::rms_norm(h, b.cross_norm, eps, c ? &c->cross_inv_rms : nullptr);
      if (c) c->cross_normed = normed;
      y = attention_layer(b.cross_attn, normed, *in.memory, heads, cross, c ? &c->cross : nullptr);
      ctx.reduce_partial(y);
      ops::dropout_(y, ctx.dropout(random_site(st, blk, SiteKind::kCrossAttentionOut), rate));
      ops::add_(h, y);
    }
    // Feed-forward sublayer: dense or Switch.
    if (c) c->ffn_input = h.clone();
    normed =
        ops::rms_norm(h, b.ffn_norm, eps, c ? &c->ffn_inv_rms : nullptr).view({batch * length, d});
    if (c) c->ffn_normed = normed;
    if (!b.sparse) {
      y = feed_forward(
          b.ffn, config_.activation(), normed,
          ctx.dropout_part(ctx.dropout(random_site(st, blk, SiteKind::kFeedForwardInner), rate),
                           d_ff_),
          c ? &c->ffn : nullptr);
      ctx.reduce_partial(y);
    } else {
      const int64_t group_size = routing_group_size(routing_config, batch, length);
      SwitchOutput sw =
          switch_ffn(b.switch_ffn, routing_config, normed, group_size, ctx,
                     random_site(st, blk, SiteKind::kRouterJitter),
                     random_site(st, blk, SiteKind::kFeedForwardInner), expert_group_);
      losses.add_layer(s.stack, blk, sw, group_size, out.routing);
      y = sw.y;
      if (c) {
        c->switch_out = std::move(sw);
        c->group_size = group_size;
      }
    }
    y = y.view({batch, length, d});
    ops::dropout_(y, ctx.dropout(random_site(st, blk, SiteKind::kFeedForwardOut), rate));
    ops::add_(h, y);
    if (ctx.keep_block_outputs) out.block_outputs.push_back({s.stack, blk, h.clone()});
  }
  losses.finish_stack();
  if (cache) cache->final_input = h;
  Tensor final_out = ops::rms_norm(h, s.final_norm, eps, cache ? &cache->final_inv_rms : nullptr);
  ops::dropout_(final_out, ctx.dropout(random_site(st, 0, SiteKind::kFinal), rate));
  return final_out;
}

Tensor SwitchTransformer::backward_stack(const StackWeights& s, const StackInputs& in,
                                         const RunContext& ctx, const StackCache& cache,
                                         Tensor d_out, const LossScales& scales,
                                         GradientBuffer& grads) const {
  const int st = static_cast<int>(s.stack);
  const bool decoder = s.stack == Stack::kDecoder;
  const int64_t batch = in.ids->dim(0), length = in.ids->dim(1), d = config_.d_model();
  const int64_t heads = heads_;
  const int64_t memory_length = decoder ? in.memory->dim(1) : 0;
  const double rate = config_.dropout_rate();
  // Dropout is linear with a fixed mask: its backward applies the same spec to the grad.
  ops::dropout_(d_out, ctx.dropout(random_site(st, 0, SiteKind::kFinal), rate));
  Tensor dh = ops::rms_norm_backward(d_out, cache.final_input, s.final_norm, cache.final_inv_rms,
                                     grads.of(s.final_norm));
  const Tensor bias = position_bias_for(s, length);
  Tensor d_bias = Tensor::zeros(bias.shape(), bias.dtype());
  Tensor d_memory = decoder ? Tensor::zeros(in.memory->shape(), in.memory->dtype()) : Tensor();
  auto grads_of = [&](const AttentionWeights& w) {
    return AttentionWeights{grads.of(w.q), grads.of(w.k), grads.of(w.v), grads.of(w.o)};
  };
  for (int64_t blk = static_cast<int64_t>(s.blocks.size()) - 1; blk >= 0; --blk) {
    const Block& b = s.blocks[blk];
    const BlockCache& c = cache.blocks[blk];
    // Feed-forward sublayer: h += dropout(ffn(norm(h))).
    Tensor dy = dh.clone();
    ops::dropout_(dy, ctx.dropout(random_site(st, blk, SiteKind::kFeedForwardOut), rate));
    dy = dy.view({batch * length, d});
    Tensor d_normed;
    const ops::DropoutSpec inner = ctx.dropout_part(
        ctx.dropout(random_site(st, blk, SiteKind::kFeedForwardInner), rate), d_ff_);
    if (!b.sparse) {
      FeedForwardWeights g{b.ffn.wi.defined() ? grads.of(b.ffn.wi) : Tensor(),
                           b.ffn.wi_0.defined() ? grads.of(b.ffn.wi_0) : Tensor(),
                           b.ffn.wi_1.defined() ? grads.of(b.ffn.wi_1) : Tensor(),
                           grads.of(b.ffn.wo)};
      d_normed =
          feed_forward_backward(b.ffn, config_.activation(), c.ffn_normed, inner, c.ffn, dy, g);
      ctx.reduce_partial(d_normed);
    } else {
      const FeedForwardWeights& ex = b.switch_ffn.experts;
      SwitchGradients g;
      g.router = grads.of(b.switch_ffn.router);
      g.experts = {ex.wi.defined() ? grads.of(ex.wi) : Tensor(),
                   ex.wi_0.defined() ? grads.of(ex.wi_0) : Tensor(),
                   ex.wi_1.defined() ? grads.of(ex.wi_1) : Tensor(), grads.of(ex.wo)};
      d_normed = switch_ffn_backward(b.switch_ffn, config_, c.ffn_normed, c.switch_out, dy,
                                     scales.aux, scales.z, c.group_size, ctx,
                                     random_site(st, blk, SiteKind::kRouterJitter),
                                     random_site(st, blk, SiteKind::kFeedForwardInner), g);
    }
    ops::add_(dh, ops::rms_norm_backward(d_normed.view(dh.shape()), c.ffn_input, b.ffn_norm,
                                         c.ffn_inv_rms, grads.of(b.ffn_norm)));
    // Cross-attention sublayer (decoder): h += dropout(attn(norm(h), memory)).
    if (decoder) {
      dy = dh.clone();
      ops::dropout_(dy, ctx.dropout(random_site(st, blk, SiteKind::kCrossAttentionOut), rate));
      ops::AttentionInputs cross;
      cross.key_mask = in.memory_mask;
      cross.dropout =
          ctx.dropout_part(ctx.dropout(random_site(st, blk, SiteKind::kCrossAttentionProbs), rate),
                           heads * length * memory_length);
      AttentionWeights g = grads_of(b.cross_attn);
      AttentionGradients a = attention_layer_backward(b.cross_attn, c.cross_normed, *in.memory,
                                                      heads, cross, c.cross, dy, g);
      ops::add_(d_memory, a.dmemory);  // a partial sum under mp, completed after the loop
      ctx.reduce_partial(a.dx);
      ops::add_(dh, ops::rms_norm_backward(a.dx, c.cross_input, b.cross_norm, c.cross_inv_rms,
                                           grads.of(b.cross_norm)));
    }
    // Self-attention sublayer: h += dropout(attn(norm(h))), keys and values from norm(h) too.
    dy = dh.clone();
    ops::dropout_(dy, ctx.dropout(random_site(st, blk, SiteKind::kSelfAttentionOut), rate));
    ops::AttentionInputs self;
    self.bias = &bias;
    self.key_mask = in.mask;
    self.causal = decoder;
    self.dropout =
        ctx.dropout_part(ctx.dropout(random_site(st, blk, SiteKind::kSelfAttentionProbs), rate),
                         heads * length * length);
    AttentionWeights g = grads_of(b.self_attn);
    const AttentionGradients a = attention_layer_backward(b.self_attn, c.self_normed, c.self_normed,
                                                          heads, self, c.self, dy, g);
    ops::add_(d_bias, a.dbias);
    Tensor d_self_normed = a.dx;
    ops::add_(d_self_normed, a.dmemory);
    ctx.reduce_partial(d_self_normed);
    ops::add_(dh, ops::rms_norm_backward(d_self_normed, c.self_input, b.self_norm, c.self_inv_rms,
                                         grads.of(b.self_norm)));
  }
  if (decoder) ctx.reduce_partial(d_memory);
  // The shared bias table: bias[h, i, j] = table[bucket(j - i), h]. Under mp this rank's
  // heads are columns [first, first + heads) and the table's gradient is summed over the
  // group.
  Tensor& d_table = grads.of(s.relative_bias);
  const int64_t first = model_group_ ? model_group_->rank() * heads : 0;
  Tensor d_table_here = Tensor::zeros(d_table.shape(), d_table.dtype(), d_table.device());
  ops::position_bias_backward(d_bias, !decoder, config_.relative_attention_max_distance(), first,
                              d_table_here);
  ctx.reduce_partial(d_table_here);
  ops::add_(d_table, d_table_here);
  // Embedding (dropout first): rows of the shared table.
  ops::dropout_(dh, ctx.dropout(random_site(st, 0, SiteKind::kEmbedding), rate));
  ops::embedding_backward(dh, *in.ids, grads.of(shared_));
  return d_memory;
}

ForwardOutput SwitchTransformer::forward_backward(
    const Batch& batch, const ForwardOptions& options,
    std::vector<std::pair<std::string, Tensor>>& gradients, const LossScales& scales) const {
  SW_CHECK(config_.aux_loss_mode() == ModelConfig::AUX_PER_LAYER, Status::kUnsupported,
           "forward_backward: the HF aux_loss_modes have no backward yet (use AUX_PER_LAYER)");
  SW_CHECK_ARG(batch.labels.defined(), "forward_backward: labels are required");
  validate_batch(batch);
  const RunContext ctx = context(options.train, options.step);
  const Tensor* enc_mask = batch.attention_mask.defined() ? &batch.attention_mask : nullptr;
  const Tensor* dec_mask =
      batch.decoder_attention_mask.defined() ? &batch.decoder_attention_mask : nullptr;
  const StackInputs enc_in{&batch.input_ids, enc_mask, nullptr, nullptr};
  ForwardOutput out;
  StackCache enc_cache, dec_cache;
  out.encoder_output = run_stack(encoder_, enc_in, ctx, out, &enc_cache);
  const StackInputs dec_in{&batch.decoder_input_ids, dec_mask, &out.encoder_output, enc_mask};
  Tensor dec = run_stack(decoder_, dec_in, ctx, out, &dec_cache);
  const int64_t rows = batch.decoder_input_ids.numel(), vocab = config_.vocab_size();
  const bool tied = config_.tie_word_embeddings();
  const double rescale = tied ? 1.0 / std::sqrt(static_cast<double>(config_.d_model())) : 1.0;
  if (tied) ops::scale_(dec, rescale);
  const Tensor& head = tied ? shared_ : lm_head_;
  out.logits = ops::linear(dec, head);
  const Tensor flat_logits = out.logits.view({rows, vocab});
  const Tensor flat_labels = batch.labels.view({rows});
  const ops::CrossEntropy ce = ops::cross_entropy(flat_logits, flat_labels);
  out.ce_loss = ce.loss;
  out.label_tokens = ce.count;
  out.loss = out.ce_loss + out.aux_loss + out.z_loss;

  GradientBuffer grads;
  const Tensor d_logits = ops::cross_entropy_backward(flat_logits, flat_labels, scales.ce);
  ops::linear_backward_weight(d_logits, dec.view({rows, config_.d_model()}), grads.of(head), true);
  Tensor d_dec = ops::linear_backward_input(d_logits, head).view(dec.shape());
  if (tied) ops::scale_(d_dec, rescale);
  const Tensor d_memory = backward_stack(decoder_, dec_in, ctx, dec_cache, d_dec, scales, grads);
  backward_stack(encoder_, enc_in, ctx, enc_cache, d_memory, scales, grads);
  gradients = grads.by_name(params_);
  return out;
}

ForwardOutput SwitchTransformer::forward(const Batch& host_batch,
                                         const ForwardOptions& options) const {
  for (const Tensor* t :
       {&host_batch.input_ids, &host_batch.attention_mask, &host_batch.decoder_input_ids,
        &host_batch.decoder_attention_mask, &host_batch.labels})
    SW_CHECK_ARG(!t->defined() || t->device().is_cpu(), "batch: tensors must be on the cpu, got ",
                 t->str());
  validate_batch(host_batch);
  // The model's device gets its own copy of the inputs (labels stay: the loss reads them).
  Batch batch = host_batch;
  if (!device_.is_cpu())
    for (Tensor* t : {&batch.input_ids, &batch.attention_mask, &batch.decoder_input_ids,
                      &batch.decoder_attention_mask})
      if (t->defined()) *t = t->to(device_);
  RunContext ctx = context(options.train, options.step);
  ctx.keep_block_outputs = options.keep_block_outputs;
  const Tensor* enc_mask = batch.attention_mask.defined() ? &batch.attention_mask : nullptr;
  const Tensor* dec_mask =
      batch.decoder_attention_mask.defined() ? &batch.decoder_attention_mask : nullptr;

  ForwardOutput out;
  out.encoder_output =
      run_stack(encoder_, {&batch.input_ids, enc_mask, nullptr, nullptr}, ctx, out);
  Tensor dec = run_stack(
      decoder_, {&batch.decoder_input_ids, dec_mask, &out.encoder_output, enc_mask}, ctx, out);
  const int64_t b = batch.decoder_input_ids.dim(0), td = batch.decoder_input_ids.dim(1);
  if (config_.tie_word_embeddings()) {
    // Tied embeddings: rescale by d_model^-0.5 before the shared projection (SPEC §1).
    ops::scale_(dec, 1.0 / std::sqrt(static_cast<double>(config_.d_model())));
    out.logits = ops::linear(dec, shared_);
  } else {
    out.logits = ops::linear(dec, lm_head_);
  }
  if (batch.labels.defined()) {
    const ops::CrossEntropy ce = ops::cross_entropy(out.logits.view({b * td, config_.vocab_size()}),
                                                    batch.labels.view({b * td}));
    out.ce_loss = ce.loss;
    out.label_tokens = ce.count;
  }
  out.loss = out.ce_loss + out.aux_loss + out.z_loss;
  return out;
}

namespace {

// Rows `rows` of t's first dimension, copied in that order.
Tensor take_rows(const Tensor& t, const std::vector<int64_t>& rows) {
  if (!t.defined()) return t;
  Shape shape = t.shape();
  shape[0] = static_cast<int64_t>(rows.size());
  Tensor out = Tensor::empty(shape, t.dtype());
  const size_t row_bytes = t.nbytes() / static_cast<size_t>(t.dim(0));
  for (size_t i = 0; i < rows.size(); ++i)
    std::memcpy(static_cast<char*>(out.raw()) + i * row_bytes,
                static_cast<const char*>(t.raw()) + static_cast<size_t>(rows[i]) * row_bytes,
                row_bytes);
  return out;
}

// cache [B, t, D] (or undefined) followed by step [B, 1, D]: [B, t + 1, D].
Tensor append_position(const Tensor& cache, const Tensor& step) {
  const int64_t batch = step.dim(0), width = step.dim(2), t = cache.defined() ? cache.dim(1) : 0;
  Tensor out = Tensor::empty({batch, t + 1, width}, step.dtype());
  const size_t elem = dtype_size(step.dtype());
  const size_t past = static_cast<size_t>(t * width) * elem,
               row = static_cast<size_t>(width) * elem;
  for (int64_t b = 0; b < batch; ++b) {
    char* dst = static_cast<char*>(out.raw()) + static_cast<size_t>(b) * (past + row);
    if (t)
      std::memcpy(dst, static_cast<const char*>(cache.raw()) + static_cast<size_t>(b) * past, past);
    std::memcpy(dst + past, static_cast<const char*>(step.raw()) + static_cast<size_t>(b) * row,
                row);
  }
  return out;
}

}  // namespace

void DecoderState::select_rows(const std::vector<int64_t>& rows) {
  for (int64_t r : rows)
    SW_CHECK_ARG(r >= 0 && r < batch(), "select_rows: row ", r, " of a batch of ", batch());
  encoder_output = take_rows(encoder_output, rows);
  encoder_mask = take_rows(encoder_mask, rows);
  for (auto* list : {&self_k, &self_v, &cross_k, &cross_v})
    for (Tensor& t : *list) t = take_rows(t, rows);
}

DecoderState SwitchTransformer::start_decoding(const Tensor& input_ids,
                                               const Tensor& attention_mask, bool dropless) const {
  SW_CHECK(device_.is_cpu(), Status::kUnsupported,
           "cached decoding runs on the CPU path in this version");
  check_ids(input_ids, "input_ids");
  ops::check_token_ids(input_ids, config_.vocab_size(), "input_ids");
  check_mask(attention_mask, input_ids, "attention_mask");
  DecoderState state;
  RunContext ctx = context(false, 0);
  ctx.dropless = dropless;
  ForwardOutput out;
  const Tensor* mask = attention_mask.defined() ? &attention_mask : nullptr;
  state.encoder_output = run_stack(encoder_, {&input_ids, mask, nullptr, nullptr}, ctx, out);
  state.encoder_mask = attention_mask;
  state.encoder_routing = std::move(out.routing);
  for (const Block& b : decoder_.blocks) {
    state.cross_k.push_back(ops::linear(state.encoder_output, b.cross_attn.k));
    state.cross_v.push_back(ops::linear(state.encoder_output, b.cross_attn.v));
  }
  state.self_k.resize(decoder_.blocks.size());
  state.self_v.resize(decoder_.blocks.size());
  return state;
}

Tensor SwitchTransformer::decode_step(DecoderState& state, const Tensor& tokens,
                                      bool dropless) const {
  SW_CHECK(device_.is_cpu(), Status::kUnsupported,
           "cached decoding runs on the CPU path in this version");
  const int64_t batch = state.batch(), d = config_.d_model(), heads = heads_;
  SW_CHECK_ARG(tokens.defined() && tokens.dtype() == DType::i32 && tokens.numel() == batch,
               "decode_step: tokens must be i32 [", batch, "], got ", tokens.str());
  const Tensor ids = tokens.view({batch, 1});
  ops::check_token_ids(ids, config_.vocab_size(), "decode_step tokens");
  const ModelConfig step_config = routing_config_for(config_, dropless);
  const RunContext ctx = context(false, 0);
  const double eps = config_.norm_epsilon();
  const int64_t position = state.length;
  // The position bias of this query against every key so far: the last row of the table.
  const Tensor full_bias = position_bias_for(decoder_, position + 1);
  Tensor bias = Tensor::empty({heads, 1, position + 1}, full_bias.dtype());
  for (int64_t h = 0; h < heads; ++h)
    std::memcpy(static_cast<char*>(bias.raw()) +
                    static_cast<size_t>(h * (position + 1)) * dtype_size(bias.dtype()),
                static_cast<const char*>(full_bias.raw()) +
                    static_cast<size_t>((h * (position + 1) + position) * (position + 1)) *
                        dtype_size(bias.dtype()),
                static_cast<size_t>(position + 1) * dtype_size(bias.dtype()));
  const Tensor* memory_mask = state.encoder_mask.defined() ? &state.encoder_mask : nullptr;
  const int st = static_cast<int>(Stack::kDecoder);
  state.routing.clear();

  Tensor h = ops::embedding(shared_, ids);
  for (size_t i = 0; i < decoder_.blocks.size(); ++i) {
    const Block& b = decoder_.blocks[i];
    const int64_t blk = static_cast<int64_t>(i);
    Tensor normed = ops::rms_norm(h, b.self_norm, eps);
    const Tensor q = ops::linear(normed, b.self_attn.q);
    state.self_k[i] = append_position(state.self_k[i], ops::linear(normed, b.self_attn.k));
    state.self_v[i] = append_position(state.self_v[i], ops::linear(normed, b.self_attn.v));
    ops::AttentionInputs self;
    self.bias = &bias;
    Tensor y = ops::linear(ops::attention(q, state.self_k[i], state.self_v[i], heads, self),
                           b.self_attn.o);
    ctx.reduce_partial(y);
    ops::add_(h, y);
    normed = ops::rms_norm(h, b.cross_norm, eps);
    ops::AttentionInputs cross;
    cross.key_mask = memory_mask;
    y = ops::linear(ops::attention(ops::linear(normed, b.cross_attn.q), state.cross_k[i],
                                   state.cross_v[i], heads, cross),
                    b.cross_attn.o);
    ctx.reduce_partial(y);
    ops::add_(h, y);
    normed = ops::rms_norm(h, b.ffn_norm, eps).view({batch, d});
    if (!b.sparse) {
      y = feed_forward(b.ffn, config_.activation(), normed, ctx.dropout(0, 0.0));
      ctx.reduce_partial(y);
    } else {
      const int64_t group_size = routing_group_size(step_config, batch, 1);
      SwitchOutput sw =
          switch_ffn(b.switch_ffn, step_config, normed, group_size, ctx,
                     random_site(st, blk, SiteKind::kRouterJitter),
                     random_site(st, blk, SiteKind::kFeedForwardInner), expert_group_);
      state.routing.push_back(layer_routing(Stack::kDecoder, blk, sw, group_size));
      y = sw.y;
    }
    ops::add_(h, y.view({batch, 1, d}));
  }
  ++state.length;
  Tensor dec = ops::rms_norm(h, decoder_.final_norm, eps).view({batch, d});
  if (config_.tie_word_embeddings()) {
    ops::scale_(dec, 1.0 / std::sqrt(static_cast<double>(d)));
    return ops::linear(dec, shared_).to(DType::f32);
  }
  return ops::linear(dec, lm_head_).to(DType::f32);
}

}  // namespace sw
