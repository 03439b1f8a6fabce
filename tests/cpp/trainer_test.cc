// The trainer: accumulation over micro-batches equals one large batch, training lowers the
// loss, and bad input is refused.
#include "core/train/trainer.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "core/data/byte_tokenizer.h"
#include "core/tensor/allocator.h"
#include "core/train/train_config.h"
#include "test_util.h"

namespace sw {
namespace {

using testing::batch_rows;

const char* kText =
    "The experts of a Switch Transformer each see a share of the tokens; the router decides "
    "which, and the auxiliary loss keeps the shares even.";

TEST(Trainer, MicroBatchesAccumulateToTheWholeBatch) {
  const ModelConfig c = config_from_text(R"(
    vocab_size: 300 d_model: 16 d_ff: 24 d_kv: 4 num_heads: 4 num_encoder_layers: 2
    num_decoder_layers: 2 num_experts: 4 encoder_sparse_step: 1 decoder_sparse_step: 2
    capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.0 min_capacity: 1
    dropout_rate: 0 expert_dropout_rate: 0 router_jitter_eps: 0 aux_loss_coef: 0.1
    z_loss_coef: 0.01 init_scheme: INIT_HF)");
  SwitchTransformer m(c, 2, DType::f64);
  Batch b = make_continuation_batch(kText, 4, 12, 6, c);
  b.labels.data<int32_t>()[2] = b.labels.data<int32_t>()[3] = -100;  // unequal label counts
  const Trainer t(m, {});
  TrainMetrics whole_m, split_m;
  const auto whole = t.accumulate({b}, whole_m);
  const auto split = t.accumulate({batch_rows(b, 0, 1), batch_rows(b, 1, 4)}, split_m);
  EXPECT_NEAR(split_m.loss, whole_m.loss, 1e-12);
  ASSERT_EQ(whole.size(), split.size());
  for (size_t i = 0; i < whole.size(); ++i)
    EXPECT_LE(testing::max_relative_error(split[i].second, whole[i].second), 1e-10)
        << whole[i].first;
}

// TrainConfig fixed_expert_capacity (the GPU's fixed padded expert layout) reaches the
// options, and is refused by name wherever it cannot apply: a cpu model at the trainer,
// and on a GPU expert choice, top-2, dropless capacity, the router bias update and expert
// parallelism (checked on a GPU device value: nothing runs there).
TEST(Trainer, FixedExpertCapacityIsRefusedWhereItCannotApply) {
  TrainConfig config;
  config.set_fixed_expert_capacity(true);
  const TrainOptions options = train_options(config);
  EXPECT_TRUE(options.fixed_expert_capacity);
  ModelConfig c = preset("tiny");
  SwitchTransformer cpu_model(c, 1);
  EXPECT_NE(testing::error_of([&] { Trainer t(cpu_model, options); })
                .find("fixed_expert_capacity (the GPU's fixed padded expert layout): the model "
                      "is on the cpu"),
            std::string::npos);
  const Device gpu = Device::cuda(0);
  EXPECT_EQ(testing::error_of([&] { check_fixed_expert_capacity(c, gpu, false); }), "");
  auto refusal = [&](const ModelConfig& bad, bool expert_parallel) {
    return testing::error_of([&] { check_fixed_expert_capacity(bad, gpu, expert_parallel); });
  };
  EXPECT_NE(refusal(c, true).find("expert parallelism"), std::string::npos);
  ModelConfig bad = c;
  bad.set_routing(ModelConfig::EXPERT_CHOICE);
  EXPECT_NE(refusal(bad, false).find("got expert choice"), std::string::npos);
  bad = c;
  bad.set_num_selected_experts(2);
  EXPECT_NE(refusal(bad, false).find("got top-2"), std::string::npos);
  bad = c;
  bad.set_capacity_mode(ModelConfig::CAPACITY_DROPLESS);
  EXPECT_NE(refusal(bad, false).find("CAPACITY_DROPLESS"), std::string::npos);
  bad = c;
  bad.set_router_bias_update_rate(0.001);
  EXPECT_NE(refusal(bad, false).find("router_bias_update_rate 0.001"), std::string::npos);
}

// TrainConfig recompute_activations reaches the steps: three steps of two micro-batches
// (dropout, expert dropout, jitter) leave every parameter the same bits as without it.
TEST(Trainer, RecomputationTrainsTheSameBits) {
  const ModelConfig c = config_from_text(R"(
    vocab_size: 300 d_model: 16 d_ff: 24 d_kv: 4 num_heads: 4 num_encoder_layers: 2
    num_decoder_layers: 2 num_experts: 4 encoder_sparse_step: 1 decoder_sparse_step: 2
    dropout_rate: 0.2 expert_dropout_rate: 0.3 router_jitter_eps: 0.05 init_scheme: INIT_HF)");
  const Batch b = make_continuation_batch(kText, 4, 12, 6, c);
  SwitchTransformer kept_model(c, 2), recomputed_model(c, 2);
  TrainConfig config;
  config.set_recompute_activations(true);
  const TrainOptions recompute = train_options(config);
  ASSERT_TRUE(recompute.recompute_activations);
  Trainer kept(kept_model, {}), recomputed(recomputed_model, recompute);
  // The tensor bytes a step adds at its peak: fewer when the option reaches the model.
  auto step_peak = [](Trainer& t, const std::vector<Batch>& parts, double& loss) {
    const size_t before = cpu_live_bytes();
    reset_cpu_peak_bytes();
    loss = t.step(parts).loss;
    return reset_cpu_peak_bytes() - before;
  };
  for (int step = 0; step < 3; ++step) {
    const std::vector<Batch> parts = {batch_rows(b, 0, 2), batch_rows(b, 2, 4)};
    double a = 0, r = 0;
    const size_t peak_kept = step_peak(kept, parts, a);
    const size_t peak_recomputed = step_peak(recomputed, parts, r);
    EXPECT_EQ(a, r) << "step " << step;
    EXPECT_LT(peak_recomputed, peak_kept) << "step " << step;
  }
  const auto& want = kept_model.parameters().entries();
  const auto& got = recomputed_model.parameters().entries();
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(0, std::memcmp(got[i].tensor.raw(), want[i].tensor.raw(), want[i].tensor.nbytes()))
        << want[i].name;
}

// Two identical micro-batches of a step draw different masks (dropout, expert dropout,
// jitter): were the masks repeated, accumulating {b, b} would give exactly {b}'s gradient.
// The streams are keyed by the micro-batch's first example in the step's batch.
TEST(Trainer, IdenticalMicroBatchesDrawTheirOwnMasks) {
  const ModelConfig c = config_from_text(R"(
    vocab_size: 300 d_model: 16 d_ff: 24 d_kv: 4 num_heads: 4 num_encoder_layers: 2
    num_decoder_layers: 2 num_experts: 4 encoder_sparse_step: 1 decoder_sparse_step: 2
    dropout_rate: 0.2 expert_dropout_rate: 0.3 router_jitter_eps: 0.05 init_scheme: INIT_HF)");
  SwitchTransformer m(c, 2, DType::f64);
  const Batch b = make_continuation_batch(kText, 2, 12, 6, c);
  const Trainer t(m, {});
  TrainMetrics once_m, twice_m;
  const auto once = t.accumulate({b}, once_m);
  const auto twice = t.accumulate({b, b}, twice_m);
  EXPECT_NE(once_m.loss, twice_m.loss);
  double largest = 0;
  for (size_t i = 0; i < once.size(); ++i)
    largest = std::max(largest, testing::max_relative_error(twice[i].second, once[i].second));
  EXPECT_GT(largest, 1e-3);
  // The same example position draws the same masks: a forward is a function of it.
  ForwardOptions at;
  at.train = true;
  at.step = 1;
  const double first = m.forward(b, at).loss;
  EXPECT_EQ(m.forward(b, at).loss, first);
  at.first_example = 2;
  EXPECT_NE(m.forward(b, at).loss, first);
  at.first_example = uint64_t{1} << 24;
  EXPECT_THROW(m.forward(b, at), Error);
}

// Same seed, any thread count: bit-identical losses, routing and parameters after three
// steps with dropout, expert dropout and router jitter on (every parallel loop works on
// fixed pieces; GEMM tiles do not depend on the thread count).
TEST(Determinism, TrainingIsBitIdenticalForAnyThreadCount) {
  const ModelConfig c = preset("tiny");
  const Batch b = make_continuation_batch(std::string(kText) + kText, 8, 32, 16, c);
  struct Run {
    std::vector<double> losses;
    std::vector<std::vector<int64_t>> routing;
    std::vector<Tensor> parameters;
  };
  auto run = [&](int threads) {
    const int previous = omp_get_max_threads();
    omp_set_num_threads(threads);
    SwitchTransformer m(c, 5);
    Trainer t(m, {});
    Run r;
    for (int step = 0; step < 3; ++step) {
      const TrainMetrics metrics = t.step(split_micro_batches(b, 2));
      r.losses.push_back(metrics.loss);
      for (const LayerLoad& l : metrics.layers) r.routing.push_back(l.tokens_per_expert);
    }
    for (const auto& e : m.parameters().entries()) r.parameters.push_back(e.tensor.clone());
    omp_set_num_threads(previous);
    return r;
  };
  const Run one = run(1);
  for (int threads : {2, 3}) {
    const Run many = run(threads);
    ASSERT_EQ(many.losses.size(), one.losses.size());
    for (size_t i = 0; i < one.losses.size(); ++i)
      EXPECT_EQ(std::memcmp(&many.losses[i], &one.losses[i], sizeof(double)), 0)
          << threads << " threads, step " << i + 1 << ": " << many.losses[i] << " vs "
          << one.losses[i];
    EXPECT_EQ(many.routing, one.routing) << threads << " threads";
    for (size_t i = 0; i < one.parameters.size(); ++i)
      ASSERT_EQ(std::memcmp(many.parameters[i].raw(), one.parameters[i].raw(),
                            one.parameters[i].nbytes()),
                0)
          << threads << " threads, parameter " << i;
  }
}

// Distillation: the teacher's probabilities enter the loss (target differs from ce and
// is what the loss adds up); a teacher with another vocabulary or a weight outside [0, 1]
// is refused by name.
TEST(Trainer, DistillsFromATeacher) {
  const ModelConfig teacher_config = config_from_text(R"(
    vocab_size: 300 d_model: 16 d_ff: 24 d_kv: 4 num_heads: 4 num_encoder_layers: 2
    num_decoder_layers: 2 num_experts: 4 encoder_sparse_step: 1 decoder_sparse_step: 2
    dropout_rate: 0)");
  ModelConfig student_config = teacher_config;
  student_config.set_encoder_sparse_step(0);
  student_config.set_decoder_sparse_step(0);
  const SwitchTransformer teacher(teacher_config, 3, DType::f32);
  SwitchTransformer student(student_config, 4, DType::f32);
  TrainOptions options;
  options.teacher = &teacher;
  Trainer t(student, options);
  const Batch b = make_continuation_batch(kText, 4, 12, 6, student_config);
  const TrainMetrics m = t.step({b});
  EXPECT_GT(std::fabs(m.target - m.ce), 1e-4);
  EXPECT_NEAR(m.loss, m.target + m.aux + m.z, 1e-12);
  ModelConfig other = student_config;
  other.set_vocab_size(400);
  SwitchTransformer wrong(other, 4, DType::f32);
  EXPECT_THROW(
      {
        try {
          Trainer bad(wrong, options);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("the teacher's vocabulary (300) is not the "
                                               "student's (400)"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
  options.teacher_weight = 1.5;
  EXPECT_THROW(Trainer(student, options), Error);
}

TEST(Trainer, TrainingLowersTheLoss) {
  const ModelConfig c = preset("tiny");
  SwitchTransformer m(c, 1);
  const Batch b = make_continuation_batch(kText, 4, 48, 16, c);
  TrainOptions o;
  o.schedule.kind = LearningRateSchedule::Kind::kConstant;
  o.schedule.base = 0.01;
  Trainer t(m, o);
  const TrainMetrics first = t.step({b});
  TrainMetrics last;
  for (int i = 0; i < 40; ++i) last = t.step({b});
  EXPECT_EQ(last.step, 41);
  EXPECT_DOUBLE_EQ(last.learning_rate, 0.01);
  EXPECT_GT(first.grad_norm, 0);
  EXPECT_LT(last.loss, 0.7 * first.loss) << "first " << first.loss << ", last " << last.loss;
}

// A NaN in a weight makes the loss NaN: the step is skipped with nothing updated (every
// parameter and every optimizer slot as before), counted, and max_bad_steps in a row stop
// training with a numeric error; once the weight is finite again training goes on.
TEST(Trainer, NonFiniteStepsAreSkippedThenStopTraining) {
  const ModelConfig c = preset("tiny");
  SwitchTransformer m(c, 1);
  const Batch b = make_continuation_batch(kText, 2, 16, 8, c);
  TrainOptions o;
  o.max_bad_steps = 3;
  Trainer t(m, o);
  ASSERT_FALSE(t.step({b}).skipped);
  auto snapshot = [&] {
    std::vector<Tensor> all;
    for (const auto& e : m.parameters().entries()) all.push_back(e.tensor.clone());
    for (const auto& s : t.optimizer().state()) all.push_back(s.second.clone());
    return all;
  };
  const std::string name = "decoder.block.0.layer.2.mlp.wo.weight";
  const Tensor good = m.parameters().get(name).clone();
  Tensor poisoned = good.clone();
  poisoned.data<float>()[5] = NAN;
  m.parameters().set(name, poisoned);
  const std::vector<Tensor> before = snapshot();
  for (int k = 1; k <= 2; ++k) {
    const TrainMetrics bad = t.step({b});
    EXPECT_TRUE(bad.skipped);
    EXPECT_EQ(bad.skipped_steps, k);
    EXPECT_EQ(bad.step, 1);
    EXPECT_EQ(t.steps_done(), 1);
  }
  const std::vector<Tensor> after = snapshot();
  ASSERT_EQ(before.size(), after.size());
  for (size_t i = 0; i < before.size(); ++i)
    EXPECT_EQ(0, std::memcmp(before[i].raw(), after[i].raw(), before[i].nbytes())) << i;
  const std::string error = testing::error_of([&] { t.step({b}); });
  EXPECT_NE(error.find("3 steps in a row after step 1 had a non-finite loss"), std::string::npos)
      << error;
  m.parameters().set(name, good);
  const TrainMetrics resumed = t.step({b});
  EXPECT_FALSE(resumed.skipped);
  EXPECT_EQ(resumed.step, 2);
  EXPECT_EQ(resumed.skipped_steps, 3);
}

// Aux-loss-free balancing: after each step every sparse layer's choice bias has moved by
// the rate towards its under-loaded experts (sign of mean load - load), the optimizer
// leaves it alone (no state for it), and a checkpointed model carries it.
TEST(Trainer, BalancingBiasesMoveTowardsTheUnderloadedExperts) {
  ModelConfig c = preset("tiny");
  c.set_aux_loss_coef(0);
  c.set_router_bias_update_rate(0.01);
  SwitchTransformer model(c, 2);
  Trainer trainer(model, {});
  const Batch b = make_continuation_batch(kText, 4, 24, 8, c);
  std::map<std::string, std::vector<double>> expected;
  for (int step = 0; step < 2; ++step) {
    const TrainMetrics m = trainer.step({b});
    ASSERT_FALSE(m.layers.empty());
    for (const LayerLoad& l : m.layers) {
      const std::string key = std::string(stack_name(l.stack)) + std::to_string(l.block);
      std::vector<double>& want = expected[key];
      want.resize(l.tokens_per_expert.size(), 0.0);
      double mean = 0;
      for (int64_t n : l.tokens_per_expert) mean += static_cast<double>(n);
      mean /= static_cast<double>(l.tokens_per_expert.size());
      const Tensor bias = model.routing_choice_bias(l.stack, l.block);
      for (size_t e = 0; e < want.size(); ++e) {
        const double gap = mean - static_cast<double>(l.tokens_per_expert[e]);
        want[e] = static_cast<float>(want[e] + 0.01 * ((gap > 0) - (gap < 0)));
        EXPECT_EQ(bias.item(static_cast<int64_t>(e)), want[e]) << key << " expert " << e;
      }
    }
  }
  for (const auto& [name, t] : trainer.optimizer().state())
    EXPECT_EQ(name.find("choice_bias"), std::string::npos) << name;
  EXPECT_TRUE(model.parameters().contains("encoder.block.1.layer.1.mlp.router.choice_bias"));
}

TEST(Trainer, BadInputIsRefused) {
  const ModelConfig c = preset("tiny");
  SwitchTransformer m(c, 1);
  Trainer t(m, {});
  EXPECT_THROW(t.step(std::vector<Batch>{}), Error);
  Batch b = make_continuation_batch(kText, 2, 8, 4, c);
  b.labels = Tensor();
  EXPECT_THROW(t.step({b}), Error);
  b = make_continuation_batch(kText, 2, 8, 4, c);
  b.labels.fill(-100);
  EXPECT_THROW(t.step({b}), Error);
  TrainOptions bad;
  bad.grad_clip_norm = -1;
  EXPECT_THROW(Trainer(m, bad), Error);
}

}  // namespace
}  // namespace sw
