// The Switch Transformer model: parameter names and counts, init, determinism, train vs
// eval, bad input, and the switch-base-8 shape on the CPU.
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/data/byte_tokenizer.h"
#include "core/model/switch_transformer.h"
#include "test_util.h"

namespace sw {
namespace {

ModelConfig small_config() {
  return config_from_text(R"(
    vocab_size: 300 d_model: 16 d_ff: 32 d_kv: 4 num_heads: 4
    num_encoder_layers: 2 num_decoder_layers: 2 num_experts: 4
    encoder_sparse_step: 2 decoder_sparse_step: 1
    capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.0 eval_capacity_factor: 1.0 min_capacity: 1
    dropout_rate: 0.1 expert_dropout_rate: 0.2 router_jitter_eps: 0.01)");
}

Batch small_batch(const ModelConfig& c) {
  return make_continuation_batch("The quick brown fox jumps over the lazy dog, again and again.", 3,
                                 10, 6, c);
}

// Parameter count from the config alone (docs/MATH.md §1-2 shapes), independent of the model code.
int64_t expected_parameters(const ModelConfig& c) {
  const int64_t d = c.d_model(), ff = c.d_ff(), inner = c.num_heads() * c.d_kv();
  const int64_t ffn = (c.activation() == ModelConfig::GATED_GELU ? 3 : 2) * d * ff;
  const int64_t attention = 4 * d * inner;
  int64_t total = c.vocab_size() * d + (c.tie_word_embeddings() ? 0 : c.vocab_size() * d);
  for (Stack s : {Stack::kEncoder, Stack::kDecoder}) {
    const bool dec = s == Stack::kDecoder;
    total += c.relative_attention_num_buckets() * c.num_heads() + d;  // bias + final norm
    for (int64_t i = 0; i < num_layers(c, s); ++i) {
      total += (dec ? 2 : 1) * attention + (dec ? 3 : 2) * d;
      total += is_sparse_block(c, s, i) ? c.num_experts() * (ffn + d) : ffn;
    }
  }
  return total;
}

TEST(Model, ParameterNamesFollowHuggingFace) {
  const SwitchTransformer m(preset("tiny"));
  const ParameterStore& p = m.parameters();
  for (const char* name :
       {"shared.weight", "encoder.block.0.layer.0.SelfAttention.q.weight",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "encoder.block.1.layer.1.mlp.router.classifier.weight",
        "encoder.block.1.layer.1.mlp.experts.expert_3.wi.weight",
        "encoder.block.0.layer.1.mlp.wi.weight", "encoder.final_layer_norm.weight",
        "decoder.block.0.layer.1.EncDecAttention.k.weight",
        "decoder.block.3.layer.2.mlp.experts.expert_7.wo.weight",
        "decoder.block.2.layer.2.layer_norm.weight", "decoder.final_layer_norm.weight"})
    EXPECT_TRUE(p.contains(name)) << name;
  EXPECT_FALSE(p.contains("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"));
  EXPECT_FALSE(p.contains("lm_head.weight"));  // tied
  EXPECT_EQ(p.get("decoder.block.3.layer.2.mlp.experts.expert_7.wo.weight").shape(),
            Shape({64, 256}));
  EXPECT_EQ(p.num_elements(), expected_parameters(m.config()));
  EXPECT_EQ(count_parameters(m.config()), expected_parameters(m.config()));
  EXPECT_THROW(p.get("encoder.block.9.layer.0.layer_norm.weight"), Error);
}

TEST(Model, ParameterCountsForEveryFeedForwardKind) {
  for (const char* extra :
       {"activation: GATED_GELU", "tie_word_embeddings: false", "encoder_sparse_step: 0",
        "sparse_placement: PLACEMENT_T5X encoder_sparse_step: 3 num_encoder_layers: 6"}) {
    ModelConfig c = small_config();
    ASSERT_TRUE(google::protobuf::TextFormat::MergeFromString(extra, &c));
    EXPECT_EQ(SwitchTransformer(c).parameters().num_elements(), expected_parameters(c)) << extra;
    EXPECT_EQ(count_parameters(c), expected_parameters(c)) << extra;
  }
}

TEST(Model, PaperInitIsTruncatedNormalWithScaledSigma) {
  ModelConfig c = small_config();
  c.set_d_model(64);
  c.set_d_ff(256);
  const SwitchTransformer m(c, 3);
  const Tensor& w = m.parameters().get("encoder.block.0.layer.1.mlp.wi.weight");  // fan_in 64
  const double sigma = std::sqrt(0.1 / 64);
  double sum_sq = 0, max_abs = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    sum_sq += w.item(i) * w.item(i);
    max_abs = std::max(max_abs, std::fabs(w.item(i)));
  }
  EXPECT_LE(max_abs, 2 * sigma * (1 + 1e-6));  // truncated at 2 sigma
  // A normal truncated at 2 sigma has std 0.8796 sigma.
  EXPECT_NEAR(std::sqrt(sum_sq / w.numel()), 0.8796 * sigma, 0.03 * sigma);
  const Tensor& norm = m.parameters().get("encoder.block.0.layer.0.layer_norm.weight");
  for (int64_t i = 0; i < norm.numel(); ++i) EXPECT_EQ(norm.item(i), 1.0);
}

TEST(Model, HfInitStds) {
  ModelConfig c = small_config();
  c.set_init_scheme(ModelConfig::INIT_HF);
  c.set_d_model(64);
  const SwitchTransformer m(c, 4);
  auto rms = [&](const char* name) {
    const Tensor& t = m.parameters().get(name);
    double s = 0;
    for (int64_t i = 0; i < t.numel(); ++i) s += t.item(i) * t.item(i);
    return std::sqrt(s / t.numel());
  };
  EXPECT_NEAR(rms("shared.weight"), 1.0, 0.03);
  EXPECT_NEAR(rms("encoder.block.0.layer.0.SelfAttention.q.weight"), 1 / std::sqrt(64.0 * 4),
              0.1 / std::sqrt(256.0));
  EXPECT_NEAR(rms("encoder.block.1.layer.1.mlp.experts.expert_0.wi.weight"), 0.125, 0.01);
}

TEST(Model, ForwardIsDeterministicAndSeedDependent) {
  const ModelConfig c = small_config();
  const Batch b = small_batch(c);
  const ForwardOutput a = SwitchTransformer(c, 11).forward(b);
  const ForwardOutput same = SwitchTransformer(c, 11).forward(b);
  const ForwardOutput other = SwitchTransformer(c, 12).forward(b);
  EXPECT_EQ(a.logits.shape(), Shape({3, 6, 300}));
  EXPECT_EQ(testing::max_relative_error(a.logits, same.logits), 0.0);
  EXPECT_GT(testing::max_relative_error(a.logits, other.logits), 1e-3);
  EXPECT_EQ(a.routing.size(), 1u + 2u);  // encoder block 1; decoder blocks 0 and 1
  EXPECT_TRUE(std::isfinite(a.loss));
  EXPECT_NEAR(a.loss, a.ce_loss + a.aux_loss + a.z_loss, 1e-12);
  EXPECT_EQ(a.label_tokens, 3 * 6);
}

TEST(Model, TrainModeDrawsDropoutPerStep) {
  const ModelConfig c = small_config();
  const SwitchTransformer m(c, 5);
  const Batch b = small_batch(c);
  ForwardOptions train;
  train.train = true;
  train.step = 7;
  const ForwardOutput eval = m.forward(b);
  const ForwardOutput t1 = m.forward(b, train);
  const ForwardOutput t2 = m.forward(b, train);
  train.step = 8;
  const ForwardOutput t3 = m.forward(b, train);
  EXPECT_EQ(testing::max_relative_error(t1.logits, t2.logits), 0.0);  // same step, same masks
  EXPECT_GT(testing::max_relative_error(t1.logits, eval.logits), 1e-3);
  EXPECT_GT(testing::max_relative_error(t1.logits, t3.logits), 1e-3);
  EXPECT_EQ(testing::max_relative_error(eval.logits, m.forward(b).logits), 0.0);
}

TEST(Model, F64ModelAgreesWithF32) {
  const ModelConfig c = small_config();
  const Batch b = small_batch(c);
  const SwitchTransformer m32(c, 9, DType::f32), m64(c, 9, DType::f64);
  const ForwardOutput a = m32.forward(b), d = m64.forward(b);
  // Same init (drawn in f64, stored rounded), so only f32 arithmetic separates them.
  EXPECT_LE(testing::max_relative_error(a.logits, d.logits), 1e-4);
  EXPECT_NEAR(a.loss, d.loss, 1e-4);
}

TEST(Model, BadInputIsAClearError) {
  const ModelConfig c = small_config();
  const SwitchTransformer m(c);
  const Batch good = small_batch(c);
  auto expect_error = [&](Batch b, Status status, const std::string& text) {
    try {
      m.forward(b);
      ADD_FAILURE() << "no error; expected " << text;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), status) << e.what();
      EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    }
  };
  Batch b = good;
  b.input_ids = good.input_ids.clone();
  b.input_ids.data<int32_t>()[4] = 300;
  expect_error(b, Status::kOutOfRange, "input_ids: token id 300 at flat position 4");
  b = good;
  b.decoder_input_ids = good.decoder_input_ids.slice(0, 2);
  expect_error(b, Status::kInvalidArgument, "decoder_input_ids: batch size 2 differs");
  b = good;
  b.attention_mask = Tensor::full(good.input_ids.shape(), DType::i32, 2);
  expect_error(b, Status::kInvalidArgument, "attention_mask: values must be 0 or 1");
  b = good;
  b.labels = Tensor::zeros({3, 5}, DType::i32);
  expect_error(b, Status::kInvalidArgument, "labels: expected shape [3, 6]");
  b = good;
  b.input_ids = Tensor::zeros({0, 10}, DType::i32);
  expect_error(b, Status::kInvalidArgument, "input_ids: expected a non-empty");
  b = good;
  b.input_ids = good.input_ids.to(DType::i64);
  expect_error(b, Status::kInvalidArgument, "input_ids: expected dtype i32");
  b = good;
  b.input_ids = Tensor();
  expect_error(b, Status::kInvalidArgument, "input_ids: missing");

  ModelConfig fixed = c;
  fixed.set_routing_group(ModelConfig::GROUP_FIXED);
  fixed.set_group_size(7);  // does not divide 3 x 10 encoder tokens
  try {
    SwitchTransformer(fixed).forward(good);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("group_size: 7 does not divide the 30 tokens"),
              std::string::npos);
  }
}

TEST(Model, DroplessModeDropsNothing) {
  ModelConfig c = small_config();
  c.set_capacity_mode(ModelConfig::CAPACITY_DROPLESS);
  c.mutable_name()->assign("dropless");
  const ForwardOutput out = SwitchTransformer(c).forward(small_batch(c));
  for (const LayerRouting& r : out.routing) {
    EXPECT_EQ(r.stats.dropped_fraction, 0.0);
    EXPECT_EQ(r.stats.kept_per_expert, r.stats.tokens_per_expert);
  }
}

TEST(Model, ExpertDropoutFollowsTokensNotBufferRows) {
  // With a small capacity some tokens drop and every later token moves up in its expert's
  // buffer; a token kept under both capacities must still see the same dropout mask, so
  // its output is identical.
  ModelConfig c = small_config();
  c.set_expert_dropout_rate(0.5);
  c.set_router_jitter_eps(0);
  const int64_t n = 24, d = c.d_model();
  SwitchWeights w;
  w.router = testing::random_tensor({c.num_experts(), d}, DType::f64, 21, 2.0);
  w.experts.wi = testing::random_tensor({c.num_experts(), c.d_ff(), d}, DType::f64, 22);
  w.experts.wo = testing::random_tensor({c.num_experts(), d, c.d_ff()}, DType::f64, 23);
  const Tensor x = testing::random_tensor({n, d}, DType::f64, 24);
  RunContext ctx;
  ctx.train = true;
  ctx.seed = 5;
  c.set_capacity_mode(ModelConfig::CAPACITY_DROPLESS);
  const SwitchOutput all = switch_ffn(w, c, x, n, ctx, {1, 2});
  c.set_capacity_mode(ModelConfig::CAPACITY_FIXED);
  c.set_expert_capacity(3);
  const SwitchOutput few = switch_ffn(w, c, x, n, ctx, {1, 2});
  ASSERT_GT(few.assignment.dropped, 0);
  int64_t compared = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (few.assignment.slot.item(t) < 0) continue;
    ++compared;
    // Equal up to GEMM rounding (blocks of other sizes); another mask would differ by O(1).
    for (int64_t i = 0; i < d; ++i)
      ASSERT_NEAR(few.y.item(t * d + i), all.y.item(t * d + i),
                  1e-12 * (1 + std::fabs(all.y.item(t * d + i))))
          << t;
  }
  EXPECT_GT(compared, 0);
  ctx.train = false;  // and dropout really is on: eval differs
  EXPECT_GT(testing::max_relative_error(all.y, switch_ffn(w, c, x, n, ctx, {1, 2}).y), 1e-3);
}

TEST(Model, SwitchBase8ShapeRunsOnTheCpu) {
  const ModelConfig c = preset("switch-base-8");
  const SwitchTransformer m(c, 0);
  EXPECT_EQ(m.parameters().num_elements(), expected_parameters(c));
  EXPECT_NEAR(m.parameters().num_elements() / 1e6, 619.4, 0.5);
  const Batch b = make_continuation_batch(
      "Switch Transformers route each token to a single expert, which keeps the cost per token "
      "constant as the number of experts grows.",
      2, 48, 12, c);
  const ForwardOutput out = m.forward(b);
  EXPECT_EQ(out.logits.shape(), Shape({2, 12, 32128}));
  EXPECT_TRUE(std::isfinite(out.loss));
  EXPECT_EQ(out.routing.size(), 12u);
  // At init the model knows nothing: the loss is at least near log(V). (It is higher: with
  // tied unit-scale embeddings and small sublayers, each position's logit for its own input
  // token is about sqrt(d_model).)
  EXPECT_GT(out.ce_loss, std::log(32128.0) - 1);
}

}  // namespace
}  // namespace sw
