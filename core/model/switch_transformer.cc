#include "core/model/switch_transformer.h"

#include <cmath>
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

// The expert of each token after capacity, a dropped token counting as expert 0: the
// assignment HF's load-balancing loss sees.
Tensor post_capacity_experts(const ops::RouterOutput& r, const ops::CapacityAssignment& a) {
  Tensor out = r.expert_index.to(Device::cpu());
  const Tensor slots = a.slot.to(Device::cpu());
  int32_t* p = out.data<int32_t>();
  const int32_t* slot = slots.data<int32_t>();
  for (int64_t t = 0; t < out.numel(); ++t)
    if (slot[t] < 0) p[t] = 0;
  return out;
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
                                     Device device)
    : config_(config), seed_(seed), dtype_(dtype), device_(device) {
  validate(config_);
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
  auto add = [&](const std::string& name, const Shape& shape, const InitRule& rule) {
    // The router runs in f32 whatever the model's dtype (SPEC §2).
    const bool router = name.find(".router.") != std::string::npos;
    return params_.add(
        name, Tensor::empty(shape, router && dtype_ == DType::bf16 ? DType::f32 : dtype_, device_),
        rule);
  };
  // q carries T5's missing 1/sqrt(d_kv) in its init (SPEC §1).
  auto attention = [&](const std::string& prefix) {
    AttentionWeights w;
    w.q = add(prefix + ".q.weight", {inner, d},
              weight(d, 1.0 / std::sqrt(static_cast<double>(d * config_.d_kv())),
                     1.0 / std::sqrt(static_cast<double>(config_.d_kv()))));
    w.k = add(prefix + ".k.weight", {inner, d}, weight(d, d_inv_sqrt));
    w.v = add(prefix + ".v.weight", {inner, d}, weight(d, d_inv_sqrt));
    w.o = add(prefix + ".o.weight", {d, inner},
              weight(inner, 1.0 / std::sqrt(static_cast<double>(inner))));
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
        b.ffn.wi_0 = add(mlp + "wi_0.weight", {d_ff, d}, in_rule);
        b.ffn.wi_1 = add(mlp + "wi_1.weight", {d_ff, d}, in_rule);
      } else {
        b.ffn.wi = add(mlp + "wi.weight", {d_ff, d}, in_rule);
      }
      b.ffn.wo = add(mlp + "wo.weight", {d, d_ff}, out_rule);
    } else {
      b.switch_ffn.router = add(mlp + "router.classifier.weight", {experts, d}, weight(d, 1.0));
      // Each projection is one [E, rows, cols] tensor (for the batched GEMM); every expert's
      // slice is registered under its HF name.
      auto expert_tensor = [&](const std::string& proj, int64_t rows, int64_t cols,
                               int64_t fan_in) {
        Tensor all = Tensor::empty({experts, rows, cols}, dtype_, device_);
        for (int64_t e = 0; e < experts; ++e)
          params_.add(mlp + "experts.expert_" + std::to_string(e) + "." + proj + ".weight",
                      all.slice(e, e + 1).view({rows, cols}), weight(fan_in, d_inv_sqrt));
        return all;
      };
      FeedForwardWeights& ex = b.switch_ffn.experts;
      if (gated) {
        ex.wi_0 = expert_tensor("wi_0", d_ff, d, d);
        ex.wi_1 = expert_tensor("wi_1", d_ff, d, d);
      } else {
        ex.wi = expert_tensor("wi", d_ff, d, d);
      }
      ex.wo = expert_tensor("wo", d, d_ff, d_ff);
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

Tensor SwitchTransformer::run_stack(const StackWeights& s, const StackInputs& in,
                                    const RunContext& ctx, ForwardOutput& out) const {
  const int st = static_cast<int>(s.stack);
  const bool decoder = s.stack == Stack::kDecoder;
  const int64_t batch = in.ids->dim(0), length = in.ids->dim(1), d = config_.d_model();
  const int64_t heads = config_.num_heads(), experts = config_.num_experts();
  const double eps = config_.norm_epsilon(), rate = config_.dropout_rate();
  const bool hf_concat = config_.aux_loss_mode() == ModelConfig::AUX_HF_CONCAT;

  Tensor h = ops::embedding(shared_, *in.ids);
  ops::dropout_(h, ctx.dropout(random_site(st, 0, SiteKind::kEmbedding), rate));
  // The bias is computed on the host (a tiny table lookup), in f32 for a GPU model.
  const Tensor table =
      device_.is_cpu() ? s.relative_bias : s.relative_bias.to(Device::cpu()).to(DType::f32);
  const Tensor bias_host = ops::position_bias(table, length, length, !decoder,
                                              config_.relative_attention_max_distance());
  const Tensor bias = device_.is_cpu() ? bias_host : bias_host.to(device_);

  // HF_CONCAT: one balance sum per sequence over all sparse layers of the stack.
  ops::BalanceSums stack_balance(batch, experts);
  double stack_z_sum = 0.0;
  int64_t stack_z_tokens = 0, sparse_layers = 0;

  for (size_t i = 0; i < s.blocks.size(); ++i) {
    const Block& b = s.blocks[i];
    const int64_t blk = static_cast<int64_t>(i);
    // Self-attention sublayer.
    ops::AttentionInputs self;
    self.bias = &bias;
    self.key_mask = in.mask;
    self.causal = decoder;
    self.dropout = ctx.dropout(random_site(st, blk, SiteKind::kSelfAttentionProbs), rate);
    Tensor normed = ops::rms_norm(h, b.self_norm, eps);
    Tensor y = attention_layer(b.self_attn, normed, normed, heads, self);
    ops::dropout_(y, ctx.dropout(random_site(st, blk, SiteKind::kSelfAttentionOut), rate));
    ops::add_(h, y);
    // Cross-attention sublayer (decoder).
    if (decoder) {
      ops::AttentionInputs cross;
      cross.key_mask = in.memory_mask;
      cross.dropout = ctx.dropout(random_site(st, blk, SiteKind::kCrossAttentionProbs), rate);
      normed = ops::rms_norm(h, b.cross_norm, eps);
      y = attention_layer(b.cross_attn, normed, *in.memory, heads, cross);
      ops::dropout_(y, ctx.dropout(random_site(st, blk, SiteKind::kCrossAttentionOut), rate));
      ops::add_(h, y);
    }
    // Feed-forward sublayer: dense or Switch.
    normed = ops::rms_norm(h, b.ffn_norm, eps).view({batch * length, d});
    if (!b.sparse) {
      y = feed_forward(b.ffn, config_.activation(), normed,
                       ctx.dropout(random_site(st, blk, SiteKind::kFeedForwardInner), rate));
    } else {
      const int64_t group_size = routing_group_size(config_, batch, length);
      SwitchOutput sw = switch_ffn(b.switch_ffn, config_, normed, group_size, ctx,
                                   random_site(st, blk, SiteKind::kRouterJitter),
                                   random_site(st, blk, SiteKind::kFeedForwardInner));
      LayerRouting r;
      r.stack = s.stack;
      r.block = blk;
      r.capacity = sw.assignment.capacity;
      r.group_size = group_size;
      r.stats = ops::routing_stats(sw.router, sw.assignment);
      r.expert_index = sw.router.expert_index;
      const double z = ops::router_z_loss(sw.router.logits);
      if (hf_concat) {
        stack_balance.add(sw.router.probs, post_capacity_experts(sw.router, sw.assignment));
        stack_z_sum += z * static_cast<double>(batch * length);
        stack_z_tokens += batch * length;
      } else {
        ops::BalanceSums balance(batch * length / group_size, experts);
        balance.add(sw.router.probs, sw.router.expert_index);
        r.aux_loss = config_.aux_loss_coef() * balance.loss();
        r.z_loss = config_.z_loss_coef() * z;
        out.aux_loss += r.aux_loss;
        out.z_loss += r.z_loss;
      }
      out.routing.push_back(std::move(r));
      ++sparse_layers;
      y = sw.y;
    }
    y = y.view({batch, length, d});
    ops::dropout_(y, ctx.dropout(random_site(st, blk, SiteKind::kFeedForwardOut), rate));
    ops::add_(h, y);
    if (ctx.keep_block_outputs) out.block_outputs.push_back({s.stack, blk, h.clone()});
  }
  if (hf_concat && sparse_layers > 0) {
    out.aux_loss += config_.aux_loss_coef() * stack_balance.loss();
    out.z_loss += config_.z_loss_coef() * stack_z_sum / static_cast<double>(stack_z_tokens);
  }
  Tensor final_out = ops::rms_norm(h, s.final_norm, eps);
  ops::dropout_(final_out, ctx.dropout(random_site(st, 0, SiteKind::kFinal), rate));
  return final_out;
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
  RunContext ctx;
  ctx.train = options.train;
  ctx.seed = seed_;
  ctx.step = options.step;
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

}  // namespace sw
