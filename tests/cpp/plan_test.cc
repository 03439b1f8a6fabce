// `switch plan` (core/dist/plan.h): its parameter and optimizer-state counts against a real
// model and optimizer, its rules for layouts and requests, and its ranking. Its memory and
// traffic against measured runs: tests/dist/check_plan.py (ctest dist.cli.plan).
#include "core/dist/plan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/data/byte_tokenizer.h"
#include "core/model/switch_transformer.h"
#include "core/tensor/error.h"
#include "core/train/trainer.h"

namespace sw {
namespace {

PlanRequest one_gpu(const ModelConfig& c) {
  PlanRequest r;
  r.set_model_preset("");
  *r.mutable_model() = c;
  r.set_gpus(1);
  r.set_dtype("f32");
  r.set_batch_size(4);
  r.set_input_length(12);
  r.set_target_length(6);
  return r;
}

const char* kText = "The quick brown fox jumps over the lazy dog, again and again and again.";

const char* kSmall = R"(
    vocab_size: 300 d_model: 16 d_ff: 24 d_kv: 4 num_heads: 4 num_encoder_layers: 2
    num_decoder_layers: 2 num_experts: 4 encoder_sparse_step: 1 decoder_sparse_step: 2
    min_capacity: 1 dropout_rate: 0 expert_dropout_rate: 0)";

// Parameters, gradients and Adafactor's state as the model and the optimizer hold them,
// across the options that change the tensor set.
TEST(Plan, CountsWhatTheModelAndOptimizerHold) {
  const std::vector<std::vector<std::string>> variants = {
      {},
      {"activation=GATED_GELU"},
      {"tie_word_embeddings=false"},
      {"tie_word_embeddings=false", "separate_input_embeddings=true"},
      {"router_bias_update_rate=0.001"},
      {"decoder_sparse_step=0", "encoder_sparse_step=2"}};
  for (const auto& overrides : variants) {
    ModelConfig c = config_from_text(kSmall);
    std::string trace;
    for (const std::string& o : overrides) {
      apply_override(c, o);
      trace += o + " ";
    }
    SCOPED_TRACE(trace);
    SwitchTransformer m(c, 1, DType::f32);
    const LayoutPlan p = plan_layout(one_gpu(c), {1, 1, 1});
    ASSERT_TRUE(p.why_not().empty()) << p.why_not();
    EXPECT_EQ(p.parameter_bytes(), 4.0 * static_cast<double>(m.parameters().num_elements()));
    double trainable = 0;
    for (const auto& e : m.parameters().entries())
      if (e.trainable) trainable += static_cast<double>(e.tensor.numel());
    EXPECT_EQ(p.gradient_bytes(), 4 * trainable);
    EXPECT_EQ(p.adamw_bytes(), 8 * trainable);
    Trainer t(m, {});
    t.step({make_continuation_batch(kText, 4, 12, 6, c)});
    double state = 0;
    for (const auto& s : t.optimizer().state()) state += static_cast<double>(s.second.nbytes());
    EXPECT_EQ(p.adafactor_bytes(), state);
  }
}

// Every preset, however large, is counted as count_parameters counts it, and planned.
TEST(Plan, CoversEveryPreset) {
  for (const std::string& name : preset_names()) {
    SCOPED_TRACE(name);
    PlanRequest r;
    r.set_model_preset(name);
    r.set_gpus(1);
    r.set_dtype("f32");
    const LayoutPlan p = plan_layout(r, {1, 1, 1});
    EXPECT_EQ(p.parameter_bytes(), 4.0 * static_cast<double>(count_parameters(preset(name))));
    r.set_gpus(64);
    const Plan plan = make_plan(r);
    EXPECT_GE(plan.layouts_size(), 7);  // 64 = 2^6: 28 layouts, some refused by the model
  }
}

TEST(Plan, SplitsWhatEachLayoutSplits) {
  PlanRequest r;  // switch-base-8: 8 experts, 12 heads, d_ff 3072, batch 2048
  r.set_gpus(8);
  const LayoutPlan one = plan_layout(r, {8, 1, 1}), ep = plan_layout(r, {1, 8, 1}),
                   mp = plan_layout(r, {2, 1, 4});
  EXPECT_LT(ep.parameter_bytes(), one.parameter_bytes());
  EXPECT_LT(mp.parameter_bytes(), one.parameter_bytes());
  EXPECT_EQ(one.expert_sent_bytes(), 0);
  EXPECT_GT(ep.expert_sent_bytes(), 0);
  EXPECT_EQ(one.model_parallel_sent_bytes(), 0);
  // The dispatched rows are part of the activations; a dense model has none.
  EXPECT_GT(one.dispatch_bytes(), 0);
  EXPECT_LT(one.dispatch_bytes(), one.activation_bytes());
  EXPECT_GT(mp.model_parallel_sent_bytes(), 0);
  // Rank-ordered sums send (p - 1) x the gradients; an all-reduce 2 (p - 1) / p x.
  EXPECT_DOUBLE_EQ(one.gradient_sent_bytes(), 7 * one.gradient_bytes());
  r.set_rank_ordered_reduction(false);
  EXPECT_DOUBLE_EQ(plan_layout(r, {8, 1, 1}).gradient_sent_bytes(), 1.75 * one.gradient_bytes());
  // Recomputation keeps less; bf16 halves the activations but the f32 attention
  // probabilities and router outputs, and adds a 2-byte weight copy.
  EXPECT_LT(one.recompute_activation_bytes(), one.activation_bytes() / 4);
  r.set_dtype("f32");
  const LayoutPlan f32 = plan_layout(r, {8, 1, 1});
  EXPECT_GT(one.activation_bytes() / f32.activation_bytes(), 0.5);
  EXPECT_LT(one.activation_bytes() / f32.activation_bytes(), 0.75);
  EXPECT_DOUBLE_EQ(one.parameter_bytes(), 1.5 * f32.parameter_bytes());
}

TEST(Plan, NamesWhyALayoutCannotBeUsed) {
  PlanRequest r;  // switch-base-8
  r.set_gpus(16);
  EXPECT_EQ(plan_layout(r, {1, 16, 1}).why_not(), "ep=16 does not divide the 8 experts");
  EXPECT_EQ(plan_layout(r, {2, 1, 8}).why_not(), "mp=8 does not divide num_heads 12 and d_ff 3072");
  r.set_batch_size(24);
  EXPECT_EQ(plan_layout(r, {16, 1, 1}).why_not(),
            "24 sequences do not split over 16 replicas x 1 micro-batches");
  r.set_batch_size(2048);
  r.mutable_model()->set_encoder_sparse_step(0);
  r.mutable_model()->set_decoder_sparse_step(0);
  EXPECT_EQ(plan_layout(r, {8, 2, 1}).why_not(), "ep=2: the model has no sparse layers to split");
  EXPECT_EQ(plan_layout(r, {16, 1, 1}).dispatch_bytes(), 0);
  // Too big for the GPU: says how much it needs.
  PlanRequest big;
  big.set_model_preset("switch-c-2048");
  big.set_gpus(8);
  const LayoutPlan p = plan_layout(big, {1, 8, 1});
  EXPECT_FALSE(p.fits());
  EXPECT_NE(p.why_not().find("GiB per GPU at load imbalance 2, has 139.0 GiB"), std::string::npos)
      << p.why_not();
}

TEST(Plan, RanksTheLayoutsThatFitByStepTime) {
  PlanRequest r;
  r.set_gpus(16);
  const Plan plan = make_plan(r);
  ASSERT_GT(plan.layouts_size(), 2);
  bool fitting = true;
  for (int i = 0; i < plan.layouts_size(); ++i) {
    const LayoutPlan& p = plan.layouts(i);
    if (!p.fits()) fitting = false;
    EXPECT_TRUE(p.fits() || !p.why_not().empty());
    EXPECT_FALSE(p.fits() && !fitting) << "a layout that fits after one that does not";
    if (i > 0 && p.fits()) {
      EXPECT_LE(plan.layouts(i - 1).step_seconds(), p.step_seconds());
    }
  }
  // The table names the model and every layout.
  const std::string table = plan_table(plan);
  EXPECT_NE(table.find("switch-base-8"), std::string::npos);
  EXPECT_NE(table.find("ep=16 does not divide the 8 experts"), std::string::npos);
}

TEST(Plan, RefusesRequestsThatMakeNoSense) {
  auto refuses = [](const std::string& text, const std::string& message) {
    try {
      plan_request_from_text(text);
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  };
  refuses("gpus: 0", "gpus must be >= 1");
  refuses("dtype: \"fp16\"", "dtype 'fp16' is not one of bf16, f32");
  refuses("batch_size: 10 micro_batches: 3", "micro_batches 3 must be >= 1 and divide");
  refuses("model_preset: \"switch-base-9\"", "switch-base-9");
  refuses("gpu: \"v100\"", "gpu 'v100': no built-in rates (known: h200, h100, a100");
  refuses("gpus: 8 layout: \"dp=3\"", "dp=3");
  refuses("load_imbalance: 0.5", "load_imbalance must be >= 1");
  refuses(
      "rates { gpu: \"x\" memory_bytes: 1 bf16_flops: 1 f32_flops: 1 "
      "intra_node_bytes_per_s: 1 inter_node_bytes_per_s: 0 }",
      "inter_node_bytes_per_s must be > 0");
  refuses("gpus: 8 bogus: 1", "bogus");
  refuses("model { num_experts: 0 }", "num_experts");
}

}  // namespace
}  // namespace sw
