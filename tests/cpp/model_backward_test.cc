// The whole model's gradient (CE + aux + z) against central finite differences in f64, in
// training mode (dropout, expert dropout, jitter, token dropping), on every parameter.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/data/byte_tokenizer.h"
#include "core/model/switch_transformer.h"
#include "core/ops/softmax.h"
#include "core/tensor/allocator.h"
#include "test_util.h"

namespace sw {
namespace {

struct Case {
  const char* name;
  const char* config;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// The loss's central difference in one parameter element, which is restored after.
double central_difference(const SwitchTransformer& m, const Batch& b, const ForwardOptions& o,
                          double* x) {
  const double saved = *x, h = 1e-6;
  *x = saved + h;
  const double up = m.forward(b, o).loss;
  *x = saved - h;
  const double down = m.forward(b, o).loss;
  *x = saved;
  return (up - down) / (2 * h);
}

// Training mode (dropout, expert dropout, jitter) at a step of its own.
ForwardOptions train_mode(uint64_t step = 4) {
  ForwardOptions o;
  o.train = true;
  o.step = step;
  return o;
}

class ModelBackward : public ::testing::TestWithParam<Case> {};

TEST_P(ModelBackward, EveryParameterMatchesFiniteDifferences) {
  const ModelConfig c = config_from_text(GetParam().config);
  SwitchTransformer m(c, 5, DType::f64);
  Batch b = make_continuation_batch("Sparse experts, dense results: routing text to its expert.", 2,
                                    7, 5, c);
  b.labels.data<int32_t>()[3] = -100;  // an ignored label
  ForwardOptions train = train_mode();
  std::vector<std::pair<std::string, Tensor>> grads;
  const ForwardOutput out = m.forward_backward(b, train, grads);
  EXPECT_NEAR(out.loss, m.forward(b, train).loss, 1e-12);  // the same forward
  int64_t dropped = 0;
  for (const LayerRouting& r : out.routing) dropped += r.stats.dropped_fraction > 0;
  if (c.capacity_mode() == ModelConfig::CAPACITY_DROPLESS) {
    EXPECT_EQ(dropped, 0) << "dropless routing dropped a token";
  } else {
    EXPECT_GT(dropped, 0) << "token dropping should be part of the check";
  }
  ASSERT_EQ(grads.size(), m.parameters().entries().size());
  // Every element of the small parameters (norms, the position-bias tables); 32 of each
  // larger one, spread evenly from its first element to its last (first and last rows
  // included).
  double diff = 0, norm = 0;
  int64_t checked = 0;
  for (size_t p = 0; p < grads.size(); ++p) {
    Tensor t = m.parameters().entries()[p].tensor;
    ASSERT_EQ(grads[p].first, m.parameters().entries()[p].name);
    const int64_t n = t.numel(), samples = n <= 64 ? n : 32;
    for (int64_t k = 0; k < samples; ++k) {
      const int64_t i = n <= 64 ? k : k * (n - 1) / (samples - 1);
      ++checked;
      const double numeric = central_difference(m, b, train, t.data<double>() + i);
      const double analytic = grads[p].second.item(i);
      diff += (numeric - analytic) * (numeric - analytic);
      norm += numeric * numeric;
      EXPECT_NEAR(analytic, numeric, 1e-5 * (1 + std::fabs(numeric)))
          << grads[p].first << "[" << i << "]";
    }
  }
  EXPECT_LE(std::sqrt(diff / norm), 1e-6);
  RecordProperty("elements_checked", static_cast<int>(checked));
}

// ForwardOptions::gradients_final reports every parameter exactly once, each at a point
// after which the backward adds nothing to it (its value then is its final value), as the
// very tensor forward_backward returns; the same order for a reused buffer. A report made
// too early (a parameter still written after it, like the shared embedding or a
// position-bias table) shows as a value that changes.
TEST_P(ModelBackward, GradientsAreReportedOnceWhenFinal) {
  const ModelConfig c = config_from_text(GetParam().config);
  SwitchTransformer m(c, 5, DType::f64);
  const Batch b =
      make_continuation_batch("Gradients, final as soon as the backward is done.", 2, 7, 5, c);
  ForwardOptions train = train_mode();
  struct Report {
    std::string name;
    Tensor at_report, tensor;
  };
  std::vector<Report> reports;
  std::vector<size_t> calls;  // reports per call
  train.gradients_final = [&](const std::vector<std::pair<std::string, Tensor>>& ready) {
    EXPECT_FALSE(ready.empty());
    calls.push_back(ready.size());
    for (const auto& [name, grad] : ready) reports.push_back({name, grad.clone(), grad});
  };
  GradientBuffer buffer;
  std::vector<std::string> first_order;
  for (int pass = 0; pass < 2; ++pass) {  // the second reuses the buffer
    reports.clear();
    calls.clear();
    std::vector<std::pair<std::string, Tensor>> grads;
    m.forward_backward(b, train, grads, LossScales(), &buffer);
    ASSERT_EQ(reports.size(), grads.size());
    EXPECT_GT(calls.size(), 4u) << "gradients should be reported in several groups";
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < grads.size(); ++i) index[grads[i].first] = i;
    std::set<std::string> seen;
    double largest = 0;
    for (const Report& r : reports) {
      ASSERT_TRUE(seen.insert(r.name).second) << r.name << " reported twice";
      ASSERT_EQ(index.count(r.name), 1u) << r.name;
      const Tensor& final = grads[index[r.name]].second;
      EXPECT_EQ(r.tensor.raw(), final.raw()) << r.name << ": not the tensor returned";
      ASSERT_EQ(r.at_report.nbytes(), final.nbytes()) << r.name;
      EXPECT_EQ(0, std::memcmp(r.at_report.raw(), final.raw(), final.nbytes()))
          << r.name << " changed after it was reported final";
      for (int64_t i = 0; i < final.numel(); ++i)
        largest = std::max(largest, std::fabs(final.item(i)));
    }
    EXPECT_GT(largest, 0.0);
    std::vector<std::string> order;
    for (const Report& r : reports) order.push_back(r.name);
    if (pass == 0) first_order = order;
    EXPECT_EQ(order, first_order) << "the order should depend only on the model's shape";
  }
}

// Activation recomputation: the same loss and every gradient the same bits (each block's
// forward runs again from its input, drawing the same dropout, jitter and routing), while
// fewer tensor bytes are alive at the peak.
TEST_P(ModelBackward, RecomputationGivesTheSameBitsInLessMemory) {
  const ModelConfig c = config_from_text(GetParam().config);
  SwitchTransformer m(c, 5, DType::f64);
  const Batch b =
      make_continuation_batch("Recompute the blocks, keep only their inputs.", 2, 7, 5, c);
  ForwardOptions train = train_mode();
  // The bytes a call adds at its peak over those alive before it.
  auto peak_of = [&](std::vector<std::pair<std::string, Tensor>>& grads) {
    const size_t before = cpu_live_bytes();
    reset_cpu_peak_bytes();
    const ForwardOutput out = m.forward_backward(b, train, grads);
    return std::make_pair(out, reset_cpu_peak_bytes() - before);
  };
  std::vector<std::pair<std::string, Tensor>> kept, recomputed;
  const auto [a, peak_kept] = peak_of(kept);
  train.recompute = true;
  const auto [r, peak_recomputed] = peak_of(recomputed);
  EXPECT_EQ(a.loss, r.loss);
  EXPECT_EQ(a.aux_loss, r.aux_loss);
  ASSERT_EQ(kept.size(), recomputed.size());
  for (size_t i = 0; i < kept.size(); ++i) {
    ASSERT_EQ(kept[i].first, recomputed[i].first);
    EXPECT_EQ(
        0, std::memcmp(kept[i].second.raw(), recomputed[i].second.raw(), kept[i].second.nbytes()))
        << kept[i].first;
  }
  EXPECT_LT(peak_recomputed, peak_kept);
  RecordProperty("peak_bytes_kept", static_cast<int>(peak_kept));
  RecordProperty("peak_bytes_recomputed", static_cast<int>(peak_recomputed));
}

// Distillation: with a teacher's probabilities in the options, the loss's cross-entropy is
// the mixed target's, and its gradient matches finite differences (8 elements of every
// parameter, a dense student as `switch distill` trains).
TEST(ModelBackwardDistillation, MixedTargetMatchesFiniteDifferences) {
  const ModelConfig c = config_from_text(
      "vocab_size: 300 d_model: 8 d_ff: 12 d_kv: 4 num_heads: 2 num_encoder_layers: 2 "
      "num_decoder_layers: 2 encoder_sparse_step: 0 decoder_sparse_step: 0 dropout_rate: 0.1");
  SwitchTransformer m(c, 5, DType::f64);
  Batch b =
      make_continuation_batch("A teacher's probabilities, mixed into the target.", 2, 7, 5, c);
  b.labels.data<int32_t>()[3] = -100;
  const Tensor teacher = ops::softmax(testing::random_tensor({2 * 5, 300}, DType::f64, 7, 3.0));
  ForwardOptions train = train_mode(2);
  train.teacher_probs = &teacher;
  train.teacher_weight = 0.25;
  std::vector<std::pair<std::string, Tensor>> grads;
  const ForwardOutput out = m.forward_backward(b, train, grads);
  EXPECT_NEAR(out.loss, m.forward(b, train).loss, 1e-12);
  EXPECT_GT(std::fabs(out.target_loss - out.ce_loss), 1e-3);  // the teacher changes the loss
  for (size_t p = 0; p < grads.size(); ++p) {
    Tensor t = m.parameters().entries()[p].tensor;
    const int64_t n = t.numel();
    for (int64_t k = 0; k < 8; ++k) {
      const int64_t i = k * (n - 1) / 7;
      const double numeric = central_difference(m, b, train, t.data<double>() + i);
      EXPECT_NEAR(grads[p].second.item(i), numeric, 1e-5 * (1 + std::fabs(numeric)))
          << grads[p].first << "[" << i << "]";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Configs, ModelBackward,
    ::testing::Values(Case{"tied_relu", R"(vocab_size: 300 d_model: 8 d_ff: 12 d_kv: 4 num_heads: 2
             num_encoder_layers: 2 num_decoder_layers: 2 num_experts: 3 encoder_sparse_step: 1
             decoder_sparse_step: 2 capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.0
             min_capacity: 1 dropout_rate: 0.1 expert_dropout_rate: 0.2 router_jitter_eps: 0.05
             aux_loss_coef: 0.1 z_loss_coef: 0.05 init_scheme: INIT_HF)"},
                      Case{"untied_gated_gelu",
                           R"(vocab_size: 300 d_model: 8 d_ff: 12 d_kv: 4 num_heads: 2
             num_encoder_layers: 2 num_decoder_layers: 2 num_experts: 3 encoder_sparse_step: 2
             decoder_sparse_step: 1 activation: GATED_GELU tie_word_embeddings: false
             capacity_mode: CAPACITY_FIXED expert_capacity: 2 dropout_rate: 0.1
             expert_dropout_rate: 0.2 router_jitter_eps: 0.05 aux_loss_coef: 0.1 z_loss_coef: 0.05
             init_scheme: INIT_HF)"},
                      Case{"separate_input_embeddings",
                           R"(vocab_size: 300 d_model: 8 d_ff: 12 d_kv: 4 num_heads: 2
             num_encoder_layers: 2 num_decoder_layers: 2 num_experts: 3 encoder_sparse_step: 1
             decoder_sparse_step: 1 tie_word_embeddings: false separate_input_embeddings: true
             capacity_mode: CAPACITY_FIXED expert_capacity: 2 dropout_rate: 0.1
             expert_dropout_rate: 0.2 router_jitter_eps: 0.05 aux_loss_coef: 0.1 z_loss_coef: 0.05
             init_scheme: INIT_HF)"},
                      Case{"top2_moe",
                           R"(vocab_size: 300 d_model: 8 d_ff: 12 d_kv: 4 num_heads: 2
             num_encoder_layers: 2 num_decoder_layers: 2 num_experts: 4 encoder_sparse_step: 1
             decoder_sparse_step: 1 num_selected_experts: 2 capacity_mode: CAPACITY_FACTOR
             train_capacity_factor: 0.75 min_capacity: 1 dropout_rate: 0.1
             expert_dropout_rate: 0.2 router_jitter_eps: 0.05 aux_loss_coef: 0.1 z_loss_coef: 0.05
             init_scheme: INIT_HF)"},
                      Case{"dropless",
                           R"(vocab_size: 300 d_model: 8 d_ff: 12 d_kv: 4 num_heads: 2
             num_encoder_layers: 2 num_decoder_layers: 2 num_experts: 3 encoder_sparse_step: 1
             decoder_sparse_step: 1 capacity_mode: CAPACITY_DROPLESS dropout_rate: 0.1
             expert_dropout_rate: 0.2 router_jitter_eps: 0.05 aux_loss_coef: 0.1 z_loss_coef: 0.05
             init_scheme: INIT_HF)"},
                      Case{"expert_choice_encoder",
                           R"(vocab_size: 300 d_model: 8 d_ff: 12 d_kv: 4 num_heads: 2
             num_encoder_layers: 2 num_decoder_layers: 2 num_experts: 4 encoder_sparse_step: 1
             decoder_sparse_step: 0 routing: EXPERT_CHOICE capacity_mode: CAPACITY_FACTOR
             train_capacity_factor: 1.0 min_capacity: 1 dropout_rate: 0.1
             expert_dropout_rate: 0.2 router_jitter_eps: 0.05 aux_loss_coef: 0 z_loss_coef: 0.05
             init_scheme: INIT_HF)"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace sw
