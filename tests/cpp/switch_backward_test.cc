// The Switch FFN layer's backward against central finite differences in f64, on
// L = sum(y * R) + s * (aux + z) with token dropping, train-mode jitter and expert dropout,
// for ReLU and GEGLU experts, with and without HF's jitter-reaches-experts.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/model/switch_ffn.h"
#include "test_util.h"

namespace sw {
namespace {

using testing::gradient_error;
using testing::random_tensor;

struct Case {
  ModelConfig::Activation activation;
  bool jitter_reaches_experts;
};

class SwitchBackward : public ::testing::TestWithParam<Case> {};

TEST_P(SwitchBackward, MatchesFiniteDifferences) {
  ModelConfig c = config_from_text(R"(
    d_model: 8 d_ff: 12 num_experts: 3 capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.0
    min_capacity: 1 router_jitter_eps: 0.05 expert_dropout_rate: 0.25 aux_loss_coef: 0.3
    z_loss_coef: 0.2)");
  c.set_activation(GetParam().activation);
  c.set_jitter_reaches_experts(GetParam().jitter_reaches_experts);
  const int64_t n = 12, group = 6, d = 8, ff = 12;
  SwitchWeights w;
  w.router = random_tensor({3, d}, DType::f64, 1, 1.0);
  w.experts.wi = random_tensor({3, ff, d}, DType::f64, 2, 0.4);
  w.experts.wi_0 = random_tensor({3, ff, d}, DType::f64, 3, 0.4);
  w.experts.wi_1 = random_tensor({3, ff, d}, DType::f64, 4, 0.4);
  w.experts.wo = random_tensor({3, d, ff}, DType::f64, 5, 0.3);
  Tensor x = random_tensor({n, d}, DType::f64, 6);
  const Tensor r = random_tensor({n, d}, DType::f64, 7);
  const double scale = 1.7;
  RunContext ctx;
  ctx.train = true;
  ctx.seed = 3;
  ctx.step = 2;
  auto loss = [&] {
    const SwitchOutput out = switch_ffn(w, c, x, group, ctx, 1, 2);
    ops::BalanceSums balance(n / group, 3);
    balance.add(out.router.probs, out.router.expert_index);
    double s = 0;
    for (int64_t i = 0; i < out.y.numel(); ++i) s += out.y.item(i) * r.item(i);
    return s + scale * (c.aux_loss_coef() * balance.loss() +
                        c.z_loss_coef() * ops::router_z_loss(out.router.logits));
  };
  const SwitchOutput fwd = switch_ffn(w, c, x, group, ctx, 1, 2);
  ASSERT_GT(fwd.assignment.dropped, 0);  // dropped tokens are part of the check
  SwitchGradients g;
  const Tensor dx = switch_ffn_backward(w, c, x, fwd, r, scale, scale, group, ctx, 1, 2, g);
  EXPECT_LE(gradient_error(x, loss, dx), 1e-6);
  EXPECT_LE(gradient_error(w.router, loss, g.router), 1e-6);
  EXPECT_LE(gradient_error(w.experts.wo, loss, g.experts.wo), 1e-6);
  if (c.activation() == ModelConfig::GATED_GELU) {
    EXPECT_LE(gradient_error(w.experts.wi_0, loss, g.experts.wi_0), 1e-6);
    EXPECT_LE(gradient_error(w.experts.wi_1, loss, g.experts.wi_1), 1e-6);
  } else {
    EXPECT_LE(gradient_error(w.experts.wi, loss, g.experts.wi), 1e-6);
  }
}

INSTANTIATE_TEST_SUITE_P(Experts, SwitchBackward,
                         ::testing::Values(Case{ModelConfig::RELU, false},
                                           Case{ModelConfig::GATED_GELU, false},
                                           Case{ModelConfig::GELU, true}),
                         [](const auto& info) {
                           return std::string(info.param.activation == ModelConfig::RELU ? "relu"
                                              : info.param.activation == ModelConfig::GELU
                                                  ? "gelu"
                                                  : "gated_gelu") +
                                  (info.param.jitter_reaches_experts ? "_hf_jitter" : "");
                         });

}  // namespace
}  // namespace sw
