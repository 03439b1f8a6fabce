// The model's parameters: every tensor named as in the HF checkpoints, shaped for this
// rank's share (expert and model parallelism), with its init rule (docs/MATH.md §4).
#include <unistd.h>

#include <cmath>
#include <string>

#include "core/model/switch_transformer.h"

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

}  // namespace

void SwitchTransformer::build_parameters() {
  if (device_.is_cpu()) {
    // Refuse a model the machine cannot hold before allocating it (this rank's share under
    // expert or model parallelism, at least the whole divided by the group sizes).
    const double parts =
        (expert_group_ ? expert_group_->size() : 1) * (model_group_ ? model_group_->size() : 1);
    const double bytes = static_cast<double>(count_parameters(config_)) *
                         static_cast<double>(dtype_size(dtype_)) / parts;
    const double memory =
        static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE));
    SW_CHECK(memory <= 0 || bytes <= memory, Status::kOutOfMemory,
             "model: ", count_parameters(config_), " parameters in ", dtype_name(dtype_), " need ",
             bytes / (1 << 30), " GiB here, more than this machine's ", memory / (1 << 30),
             " GiB of memory");
  }
  const int64_t d = config_.d_model(), vocab = config_.vocab_size();
  InitRule embedding_rule;
  embedding_rule.unit_scale = true;
  embedding_rule.hf_std = 1.0;
  // One input table for both stacks, or one each (transformers 5's untied layout).
  Tensor encoder_embedding, decoder_embedding;
  if (config_.separate_input_embeddings()) {
    encoder_embedding = params_.add("encoder.embed_tokens.weight",
                                    Tensor::empty({vocab, d}, dtype_, device_), embedding_rule);
    decoder_embedding = params_.add("decoder.embed_tokens.weight",
                                    Tensor::empty({vocab, d}, dtype_, device_), embedding_rule);
  } else {
    shared_ =
        params_.add("shared.weight", Tensor::empty({vocab, d}, dtype_, device_), embedding_rule);
    encoder_embedding = decoder_embedding = shared_;
  }
  encoder_ = build_stack(Stack::kEncoder);
  encoder_.embedding = encoder_embedding;
  decoder_ = build_stack(Stack::kDecoder);
  decoder_.embedding = decoder_embedding;
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
    // The router runs in f32 whatever the model's dtype (docs/MATH.md §2).
    const bool router = name.find(".router.") != std::string::npos;
    const Split split{parts > 1 ? split_axis : -1, parts, part};
    if (!split.whole()) shape[split.axis] /= parts;
    return params_.add(
        name, Tensor::empty(shape, router && dtype_ == DType::bf16 ? DType::f32 : dtype_, device_),
        rule, split);
  };
  // q carries T5's missing 1/sqrt(d_kv) in its init (docs/MATH.md §1).
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
    BlockWeights b;
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
      if (config_.router_bias_update_rate() > 0)
        b.switch_ffn.choice_bias = params_.add_buffer(
            mlp + "router.choice_bias",
            Tensor::empty({experts}, dtype_ == DType::bf16 ? DType::f32 : dtype_, device_));
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

}  // namespace sw
