// bf16 storage on the cpu (core/ops/storage.h) and the mixed-precision training built on it
// (TrainConfig precision BF16): the rounding against an independent reference, the ops'
// outputs under the scope, the router in f32 or bf16, and the trainer's f32 masters.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/data/byte_tokenizer.h"
#include "core/io/hf_checkpoint.h"
#include "core/model/config.h"
#include "core/model/switch_ffn.h"
#include "core/model/switch_transformer.h"
#include "core/ops/elementwise.h"
#include "core/ops/gemm.h"
#include "core/ops/storage.h"
#include "core/train/train_config.h"
#include "core/train/trainer.h"
#include "test_util.h"

namespace sw {
namespace {

using testing::random_tensor;

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// The bf16 nearest to x by comparing its two bf16 neighbours in double (ties to the even
// one), written apart from core/tensor/bf16.h's bit trick.
float reference_bf16(float x) {
  if (std::isnan(x) || std::isinf(x)) return x;
  const uint32_t low_bits = bits_of(x) & 0xffff0000u;  // towards zero
  const float low = from_bits(low_bits), high = from_bits(low_bits + 0x10000u);
  // Past the largest bf16 the next step is 2^128 in magnitude (IEEE rounds there to inf).
  const double high_value = std::isinf(high) ? std::copysign(std::ldexp(1.0, 128), x) : high;
  const double to_low = std::fabs(static_cast<double>(x) - low);
  const double to_high = std::fabs(high_value - x);
  if (to_low < to_high) return low;
  if (to_high < to_low) return high;
  return (low_bits >> 16) % 2 == 0 ? low : high;
}

bool all_bf16(const Tensor& t) {
  const Tensor f = t.to(DType::f32);
  for (int64_t i = 0; i < f.numel(); ++i)
    if ((bits_of(f.data<float>()[i]) & 0xffffu) != 0) return false;
  return true;
}

TEST(Bf16Storage, RoundsToTheNearestBf16TiesToEven) {
  Tensor t = random_tensor({4096}, DType::f32, 1, 3.0);
  float* p = t.data<float>();
  // Ties both ways, the largest finite float (rounds to inf), a tiny denormal and zeros.
  p[0] = from_bits(0x3f808000u);  // 1 + 2^-8: halfway, even is down
  p[1] = from_bits(0x3f818000u);  // halfway, even is up
  p[2] = std::numeric_limits<float>::max();
  p[3] = from_bits(0x00000001u);
  p[4] = -0.0f;
  p[5] = from_bits(0x3f808001u);  // just past halfway: up
  const Tensor before = t.clone();
  ops::round_to_bf16_(t);
  for (int64_t i = 0; i < t.numel(); ++i) {
    const float want = reference_bf16(before.data<float>()[i]);
    ASSERT_EQ(bits_of(t.data<float>()[i]), bits_of(want))
        << "element " << i << ": " << before.data<float>()[i];
  }
  EXPECT_EQ(t.data<float>()[0], 1.0f);
  EXPECT_EQ(bits_of(t.data<float>()[1]), 0x3f820000u);
  EXPECT_TRUE(std::isinf(t.data<float>()[2]));
  EXPECT_EQ(bits_of(t.data<float>()[5]), 0x3f810000u);
  Tensor nan = Tensor::full({1}, DType::f32, std::nan(""));
  ops::round_to_bf16_(nan);
  EXPECT_TRUE(std::isnan(nan.item(0)));
  Tensor f64 = Tensor::zeros({2}, DType::f64);
  EXPECT_NE(testing::error_of([&] { ops::round_to_bf16_(f64); }).find("expected dtype f32"),
            std::string::npos);
}

TEST(Bf16Storage, OpsStoreBf16OnlyInsideTheScope) {
  const Tensor a = random_tensor({7, 5}, DType::f32, 2), b = random_tensor({5, 3}, DType::f32, 3);
  EXPECT_FALSE(ops::bf16_storage());
  EXPECT_FALSE(all_bf16(ops::matmul(a, false, b, false)));
  Tensor product;
  {
    const ops::Bf16Storage on(true);
    product = ops::matmul(a, false, b, false);
    EXPECT_TRUE(all_bf16(product));
    {
      const ops::Bf16Storage off(false);  // e.g. an f32 router inside a bf16 model
      EXPECT_FALSE(all_bf16(ops::matmul(a, false, b, false)));
    }
    EXPECT_TRUE(ops::bf16_storage());
    // Weight gradients stay f32 accumulators.
    Tensor dw = Tensor::zeros({3, 5}, DType::f32);
    ops::linear_backward_weight(random_tensor({7, 3}, DType::f32, 4), a, dw, true);
    EXPECT_FALSE(all_bf16(dw));
    // In-place ops store too; f64 (gradient checks) is left alone.
    Tensor sum = a.clone();
    ops::add_(sum, random_tensor({7, 5}, DType::f32, 5));
    EXPECT_TRUE(all_bf16(sum));
    Tensor f64 = random_tensor({7, 5}, DType::f64, 6);
    ops::scale_(f64, 1.0 / 3);
    EXPECT_FALSE(all_bf16(f64));
  }
  EXPECT_FALSE(ops::bf16_storage());
  // f32 arithmetic, then one rounding: the f32 product rounded.
  Tensor want = ops::matmul(a, false, b, false);
  ops::round_to_bf16_(want);
  EXPECT_EQ(testing::max_relative_error(product, want), 0.0);
}

// A Switch layer in bf16 storage: its output is bf16; the router's logits and
// probabilities are f32 under selective precision and bf16 with router_dtype BFLOAT16.
TEST(Bf16Storage, TheRouterKeepsItsOwnPrecision) {
  ModelConfig c = config_from_text(R"(
    d_model: 16 d_ff: 24 num_experts: 4 capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.0
    min_capacity: 1 router_jitter_eps: 0.05 expert_dropout_rate: 0)");
  const int64_t n = 32, d = 16, ff = 24;
  auto bf16_valued = [](Tensor t) {
    ops::round_to_bf16_(t);
    return t;
  };
  SwitchWeights w;
  w.router = random_tensor({4, d}, DType::f32, 1, 1.0);  // an f32 master under selective precision
  w.experts.wi = bf16_valued(random_tensor({4, ff, d}, DType::f32, 2, 0.3));
  w.experts.wo = bf16_valued(random_tensor({4, d, ff}, DType::f32, 3, 0.3));
  const Tensor x = bf16_valued(random_tensor({n, d}, DType::f32, 4));
  RunContext ctx;
  ctx.train = true;
  const ops::Bf16Storage bf16(true);
  const SwitchOutput selective = switch_ffn(w, c, x, n, ctx, {1, 2});
  EXPECT_TRUE(all_bf16(selective.y));
  EXPECT_TRUE(all_bf16(selective.hidden));
  EXPECT_FALSE(all_bf16(selective.router.logits));
  EXPECT_FALSE(all_bf16(selective.router.probs));
  EXPECT_FALSE(all_bf16(selective.router_input));  // jitter in f32

  c.set_router_dtype(ModelConfig::ROUTER_BFLOAT16);
  w.router = bf16_valued(w.router);
  const SwitchOutput in_bf16 = switch_ffn(w, c, x, n, ctx, {1, 2});
  EXPECT_TRUE(all_bf16(in_bf16.router.logits));
  EXPECT_TRUE(all_bf16(in_bf16.router.probs));
  EXPECT_TRUE(all_bf16(in_bf16.router.gate));
  EXPECT_TRUE(all_bf16(in_bf16.router_input));
  EXPECT_TRUE(all_bf16(in_bf16.y));
}

ModelConfig small_model() {
  return config_from_text(R"(
    vocab_size: 300 d_model: 32 d_ff: 48 d_kv: 8 num_heads: 4 num_encoder_layers: 2
    num_decoder_layers: 2 num_experts: 4 encoder_sparse_step: 1 decoder_sparse_step: 2
    capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.25 min_capacity: 1
    dropout_rate: 0 expert_dropout_rate: 0)");
}

const char* kText =
    "Selective precision keeps the router in float32 while the rest of the model computes in "
    "bfloat16; the softmax's exponentials are where bfloat16 hurts.";

// Mixed precision steps: the masters stay f32 (they take updates smaller than a bf16 ulp),
// the losses follow an f32 run closely but not exactly, for either router precision.
TEST(Bf16Training, F32MastersTrackAnF32Run) {
  for (const auto router : {ModelConfig::ROUTER_FLOAT32, ModelConfig::ROUTER_BFLOAT16}) {
    ModelConfig c = small_model();
    c.set_router_dtype(router);
    const Batch b = make_continuation_batch(kText, 4, 48, 16, c);
    TrainOptions o;
    o.schedule.kind = LearningRateSchedule::Kind::kConstant;
    o.schedule.base = 0.01;
    SwitchTransformer f32_model(c, 3), bf16_model(c, 3);
    Trainer f32(f32_model, o);
    o.bf16 = true;
    Trainer bf16(bf16_model, o);
    bool differs = false;
    for (int step = 0; step < 5; ++step) {
      const TrainMetrics a = f32.step({b}), m = bf16.step({b});
      EXPECT_NEAR(m.loss, a.loss, 0.02 * a.loss) << "step " << step;
      differs |= m.loss != a.loss;
    }
    EXPECT_TRUE(differs) << "bf16 storage changed nothing";
    int64_t f32_valued = 0;
    for (const auto& e : bf16_model.parameters().entries())
      if (e.trainable && !all_bf16(e.tensor)) ++f32_valued;
    EXPECT_GT(f32_valued, 0) << "the masters were rounded";
    // Evaluation runs in bf16 too: close to the f32 model's, not the masters' own f32 loss.
    Trainer masters_in_f32(bf16_model, TrainOptions{});
    const double in_bf16 = bf16.evaluate({b}).loss, in_f32 = masters_in_f32.evaluate({b}).loss;
    EXPECT_NEAR(in_bf16, in_f32, 0.03 * in_f32);
    EXPECT_NE(in_bf16, in_f32);
  }
}

// The gradients a bf16 step hands the optimizer are f32 sums: over micro-batches, and for
// the position bias over every block (weight gradients are never stored in bf16).
TEST(Bf16Training, WeightGradientsStayF32) {
  const ModelConfig c = small_model();
  const Batch b = make_continuation_batch(kText, 4, 48, 16, c);
  SwitchTransformer model(c, 5);
  TrainOptions o;
  o.bf16 = true;
  const Trainer trainer(model, o);
  TrainMetrics m;
  const auto grads =
      trainer.accumulate({testing::batch_rows(b, 0, 2), testing::batch_rows(b, 2, 4)}, m);
  int64_t f32_valued = 0;
  bool bias_checked = false;
  for (const auto& [name, g] : grads) {
    f32_valued += !all_bf16(g);
    if (name.find("relative_attention_bias") != std::string::npos) {
      EXPECT_FALSE(all_bf16(g)) << name;
      bias_checked = true;
    }
  }
  EXPECT_TRUE(bias_checked);
  EXPECT_EQ(f32_valued, static_cast<int64_t>(grads.size()));
}

// A bf16 parameter's gradient is f32 (a GPU bf16 model's, for the f32 masters), and a
// part of a bf16 parameter finds its own rows of that wider gradient.
TEST(Bf16Training, Bf16ParametersKeepF32Gradients) {
  EXPECT_EQ(gradient_dtype(DType::bf16), DType::f32);
  EXPECT_EQ(gradient_dtype(DType::f64), DType::f64);
  const Tensor experts = Tensor::zeros({4, 3, 5}, DType::bf16);
  GradientBuffer buffer;
  Tensor& whole = buffer.of(experts);
  EXPECT_EQ(whole.dtype(), DType::f32);
  EXPECT_EQ(whole.shape(), experts.shape());
  for (int64_t e = 0; e < 4; ++e) {
    Tensor part = buffer.at(experts.slice(e, e + 1));
    ASSERT_EQ(part.dtype(), DType::f32);
    ASSERT_EQ(part.numel(), 15);
    part.data<float>()[0] = static_cast<float>(e + 1);  // the part is a view of `whole`
  }
  for (int64_t e = 0; e < 4; ++e) EXPECT_EQ(whole.data<float>()[e * 15], e + 1.0f) << e;
  // The wider gradient is a GPU's only: the cpu's ops keep one dtype.
  Tensor dw = Tensor::zeros({2, 2}, DType::f32);
  const Tensor bf16 = Tensor::zeros({2, 2}, DType::bf16);
  EXPECT_NE(testing::error_of([&] {
              ops::matmul(bf16, true, bf16, false, dw, 1.0, 0.0);
            }).find("f32 for bf16 inputs on a GPU only"),
            std::string::npos);
}

TEST(Bf16Training, ConfigsThatCannotApplyAreRefused) {
  TrainConfig t;
  t.mutable_model()->set_router_dtype(ModelConfig::ROUTER_BFLOAT16);
  EXPECT_NE(testing::error_of([&] {
              validate(t);
            }).find("model.router_dtype: is ROUTER_BFLOAT16 but precision is F32"),
            std::string::npos)
      << testing::error_of([&] { validate(t); });
  t.set_precision(TrainConfig::BF16);
  EXPECT_EQ(testing::error_of([&] { validate(t); }), "");
  // On a GPU bf16 trains with the router in f32 only (its router kernels are f32).
  t.set_device("cuda:0");
  EXPECT_NE(testing::error_of([&] { validate(t); }).find("ROUTER_BFLOAT16 on device cuda:0"),
            std::string::npos)
      << testing::error_of([&] { validate(t); });
  t.mutable_model()->set_router_dtype(ModelConfig::ROUTER_FLOAT32);
  EXPECT_EQ(testing::error_of([&] { validate(t); }), "");
  // The trainer refuses a model that is not f32 (the masters).
  SwitchTransformer f64(small_model(), 1, DType::f64);
  TrainOptions o;
  o.bf16 = true;
  EXPECT_NE(testing::error_of([&] { Trainer trainer(f64, o); }).find("bf16 mixed precision"),
            std::string::npos);
}

TEST(Bf16Training, RouterDtypeCrossesTheHfConfig) {
  ModelConfig c = small_model();
  c.set_router_dtype(ModelConfig::ROUTER_BFLOAT16);
  // Exported as float32: transformers casts its router to router_dtype at inference,
  // where libswitch's router is f32 whatever the field says.
  const std::string json = config_to_hf_json(c);
  EXPECT_EQ(json.find("bfloat16"), std::string::npos) << json;
  EXPECT_EQ(config_from_hf_json("{\"router_dtype\": \"bfloat16\"}").router_dtype(),
            ModelConfig::ROUTER_BFLOAT16);
  EXPECT_EQ(config_from_hf_json("{\"router_dtype\": \"float32\"}").router_dtype(),
            ModelConfig::ROUTER_FLOAT32);
  EXPECT_NE(testing::error_of([] {
              config_from_hf_json("{\"router_dtype\": \"float16\"}");
            }).find("router_dtype \"float16\" is not supported (float32, bfloat16)"),
            std::string::npos);
}

}  // namespace
}  // namespace sw
