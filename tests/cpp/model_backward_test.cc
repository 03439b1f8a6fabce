// The whole model's gradient (CE + aux + z) against central finite differences in f64, in
// training mode (dropout, expert dropout, jitter, token dropping), on every parameter.
#include <gtest/gtest.h>

#include <cmath>

#include "core/data/byte_tokenizer.h"
#include "core/model/switch_transformer.h"
#include "core/ops/softmax.h"
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

class ModelBackward : public ::testing::TestWithParam<Case> {};

TEST_P(ModelBackward, EveryParameterMatchesFiniteDifferences) {
  const ModelConfig c = config_from_text(GetParam().config);
  SwitchTransformer m(c, 5, DType::f64);
  Batch b = make_continuation_batch("Sparse experts, dense results: routing text to its expert.", 2,
                                    7, 5, c);
  b.labels.data<int32_t>()[3] = -100;  // an ignored label
  ForwardOptions train;
  train.train = true;
  train.step = 4;
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
  ForwardOptions train;
  train.train = true;
  train.step = 2;
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
