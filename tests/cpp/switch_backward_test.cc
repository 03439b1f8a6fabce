// The Switch FFN layer's backward against central finite differences in f64, on
// L = sum(y * R) + s * (aux + z) with token dropping, train-mode jitter and expert dropout,
// for ReLU and GEGLU experts, with and without HF's jitter-reaches-experts; and the
// router's health: the balance loss at and away from uniform routing, finite gradients at
// perfect balance, the aux loss and the dispatch reading the same routing.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <ostream>
#include <vector>

#include "core/model/switch_ffn.h"
#include "test_util.h"

namespace sw {
namespace {

using testing::gradient_error;
using testing::random_tensor;

struct Case {
  ModelConfig::Activation activation;
  bool jitter_reaches_experts;
  int64_t top_k = 1;            // 2: the top-2 MoE baseline
  bool normalize_gates = true;  // top_k > 1
  ModelConfig::Routing routing = ModelConfig::TOKENS_CHOOSE;
};

// Printed into the test names ctest lists (not the struct's bytes, padding included).
void PrintTo(const Case& c, std::ostream* os) {
  *os << ModelConfig::Activation_Name(c.activation)
      << (c.jitter_reaches_experts ? " hf_jitter" : "") << " top" << c.top_k
      << (c.normalize_gates ? " normalized" : " raw") << " "
      << ModelConfig::Routing_Name(c.routing);
}

class SwitchBackward : public ::testing::TestWithParam<Case> {};

TEST_P(SwitchBackward, MatchesFiniteDifferences) {
  ModelConfig c = config_from_text(R"(
    d_model: 8 d_ff: 12 num_experts: 3 capacity_mode: CAPACITY_FACTOR train_capacity_factor: 1.0
    min_capacity: 1 router_jitter_eps: 0.05 expert_dropout_rate: 0.25 aux_loss_coef: 0.3
    z_loss_coef: 0.2)");
  c.set_activation(GetParam().activation);
  c.set_jitter_reaches_experts(GetParam().jitter_reaches_experts);
  c.set_num_selected_experts(GetParam().top_k);
  c.set_normalize_gates(GetParam().normalize_gates);
  // Top-2 capacity is twice top-1's: a lower factor keeps dropped assignments in the check.
  if (GetParam().top_k > 1) c.set_train_capacity_factor(0.6);
  c.set_routing(GetParam().routing);
  if (c.routing() == ModelConfig::EXPERT_CHOICE) c.set_aux_loss_coef(0.0);  // balanced by design
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
    const SwitchOutput out = switch_ffn(w, c, x, group, ctx, {1, 2});
    ops::BalanceSums balance(n / group, 3);
    balance.add(out.router.probs, out.router.expert_index);
    double s = 0;
    for (int64_t i = 0; i < out.y.numel(); ++i) s += out.y.item(i) * r.item(i);
    return s + scale * (c.aux_loss_coef() * balance.loss() +
                        c.z_loss_coef() * ops::router_z_loss(out.router.logits));
  };
  const SwitchOutput fwd = switch_ffn(w, c, x, group, ctx, {1, 2});
  ASSERT_GT(fwd.assignment.dropped, 0);  // dropped tokens are part of the check
  ASSERT_EQ(fwd.router.gate.dim(1),
            c.routing() == ModelConfig::EXPERT_CHOICE ? c.num_experts() : GetParam().top_k);
  SwitchGradients g;
  const Tensor dx = switch_ffn_backward(w, c, x, fwd, r, scale, scale, group, ctx, {1, 2}, g);
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

// A layer of E experts over d = E features whose inputs and router are set by the test.
struct RouterCase {
  ModelConfig config = config_from_text(R"(
    d_model: 4 d_ff: 6 num_experts: 4 capacity_mode: CAPACITY_FACTOR train_capacity_factor: 2.0
    min_capacity: 1 aux_loss_coef: 0.01 z_loss_coef: 0.001 router_jitter_eps: 0
    expert_dropout_rate: 0)");
  SwitchWeights w;
  RouterCase() {
    w.router = Tensor::zeros({4, 4}, DType::f64);
    w.experts.wi = random_tensor({4, 6, 4}, DType::f64, 2, 0.4);
    w.experts.wo = random_tensor({4, 4, 6}, DType::f64, 5, 0.3);
  }
  // The layer's aux loss as the model computes it (coefficient included).
  double aux(const SwitchOutput& out, int64_t groups) const {
    ops::BalanceSums balance(groups, 4);
    balance.add(out.router.probs, out.router.expert_index);
    return config.aux_loss_coef() * balance.loss();
  }
};

Tensor positive_inputs(int64_t n) {
  Tensor x = random_tensor({n, 4}, DType::f64, 9, 0.2);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<double>()[i] += 1.0;  // all positive
  return x;
}

// Uniform probabilities give exactly the coefficient whatever the assignment; pushing
// every token towards one expert raises it monotonically towards E x the coefficient.
TEST(RouterHealth, AuxLossIsTheCoefficientUnderUniformRoutingAndGrowsWithImbalance) {
  RouterCase rc;
  const Tensor x = positive_inputs(16);
  const RunContext eval;
  const double uniform = rc.aux(switch_ffn(rc.w, rc.config, x, 16, eval, {1, 2}), 1);
  EXPECT_NEAR(uniform, rc.config.aux_loss_coef(), 1e-15);
  double previous = uniform;
  for (double push : {0.1, 0.3, 1.0, 3.0}) {
    for (int64_t j = 0; j < 4; ++j) rc.w.router.data<double>()[j] = push;  // expert 0's row
    const double aux = rc.aux(switch_ffn(rc.w, rc.config, x, 16, eval, {1, 2}), 1);
    EXPECT_GT(aux, previous) << "push " << push;
    EXPECT_LT(aux, 4 * rc.config.aux_loss_coef());
    previous = aux;
  }
  EXPECT_GT(previous, 3.9 * rc.config.aux_loss_coef());  // collapsed: nearly E x coef
}

// Perfect balance (token t to expert t mod E) with near-uniform probabilities, and exact
// uniformity (a zero router, every token tied): the loss is the coefficient and every
// gradient is finite.
TEST(RouterHealth, GradientsStayFiniteAtPerfectBalance) {
  for (double eps : {1e-3, 0.0}) {
    RouterCase rc;
    Tensor x = Tensor::zeros({8, 4}, DType::f64);
    for (int64_t t = 0; t < 8; ++t) x.data<double>()[t * 4 + t % 4] = 1.0;
    for (int64_t e = 0; e < 4; ++e) rc.w.router.data<double>()[e * 4 + e] = eps;
    RunContext ctx;
    ctx.train = true;
    const SwitchOutput fwd = switch_ffn(rc.w, rc.config, x, 8, ctx, {1, 2});
    for (int64_t t = 0; eps > 0 && t < 8; ++t) {
      EXPECT_EQ(fwd.router.expert_index.data<int32_t>()[t], t % 4);
    }
    EXPECT_NEAR(rc.aux(fwd, 1), rc.config.aux_loss_coef(), 1e-5);
    SwitchGradients g;
    const Tensor dy = random_tensor({8, 4}, DType::f64, 11);
    const Tensor dx = switch_ffn_backward(rc.w, rc.config, x, fwd, dy, 1.0, 1.0, 8, ctx, {1, 2}, g);
    for (const Tensor* t :
         {&dx, static_cast<const Tensor*>(&g.router), static_cast<const Tensor*>(&g.experts.wi),
          static_cast<const Tensor*>(&g.experts.wo)})
      for (int64_t i = 0; i < t->numel(); ++i)
        ASSERT_TRUE(std::isfinite(t->item(i))) << "eps " << eps << ", element " << i;
  }
}

// With jitter on (train), the experts a token is dispatched to is the one the aux loss
// counts: every kept token's row lies in its argmax expert's block and carries its
// input, the kept counts never exceed the argmax counts, and dropped tokens output 0.
TEST(RouterHealth, AuxLossAndDispatchUseTheSameRouting) {
  RouterCase rc;
  rc.config.set_router_jitter_eps(0.3);
  rc.config.set_train_capacity_factor(0.75);  // some tokens dropped
  rc.w.router = random_tensor({4, 4}, DType::f64, 13, 1.0);
  const Tensor x = random_tensor({32, 4}, DType::f64, 14);
  RunContext ctx;
  ctx.train = true;
  ctx.step = 5;
  const SwitchOutput out = switch_ffn(rc.w, rc.config, x, 16, ctx, {1, 2});
  const int32_t* index = out.router.expert_index.data<int32_t>();
  const int32_t* row = out.layout.row.data<int32_t>();
  std::vector<int64_t> argmax(4, 0), kept(4, 0);
  int64_t dropped = 0;
  for (int64_t t = 0; t < 32; ++t) {
    ++argmax[index[t]];
    if (row[t] < 0) {
      ++dropped;
      for (int64_t j = 0; j < 4; ++j) EXPECT_EQ(out.y.item(t * 4 + j), 0.0);
      continue;
    }
    ++kept[index[t]];
    EXPECT_GE(row[t], out.expert_offset[index[t]]) << "token " << t;
    EXPECT_LT(row[t], out.expert_offset[index[t] + 1]) << "token " << t;
    for (int64_t j = 0; j < 4; ++j)
      EXPECT_EQ(out.buffer.item(row[t] * 4 + j), out.expert_input.item(t * 4 + j));
  }
  EXPECT_GT(dropped, 0);
  const ops::RoutingStats stats = ops::routing_stats(out.router, out.assignment);
  for (int64_t e = 0; e < 4; ++e) {
    EXPECT_EQ(stats.tokens_per_expert[e], argmax[e]);
    EXPECT_EQ(stats.kept_per_expert[e], kept[e]);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Experts, SwitchBackward,
    ::testing::Values(Case{ModelConfig::RELU, false}, Case{ModelConfig::GATED_GELU, false},
                      Case{ModelConfig::GELU, true}, Case{ModelConfig::RELU, false, 2, true},
                      Case{ModelConfig::GATED_GELU, false, 2, false},
                      Case{ModelConfig::RELU, false, 1, true, ModelConfig::EXPERT_CHOICE}),
    [](const auto& info) {
      std::string name = info.param.activation == ModelConfig::RELU   ? "relu"
                         : info.param.activation == ModelConfig::GELU ? "gelu"
                                                                      : "gated_gelu";
      if (info.param.jitter_reaches_experts) name += "_hf_jitter";
      if (info.param.top_k > 1)
        name += "_top" + std::to_string(info.param.top_k) +
                (info.param.normalize_gates ? "_normalized" : "_raw");
      if (info.param.routing == ModelConfig::EXPERT_CHOICE) name += "_expert_choice";
      return name;
    });

}  // namespace
}  // namespace sw
