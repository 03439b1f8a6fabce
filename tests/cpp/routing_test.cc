// The Switch routing ops: router, capacity edge cases, dispatch/combine, aux and z losses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "core/ops/capacity.h"
#include "core/ops/dispatch.h"
#include "core/ops/router.h"
#include "core/ops/router_loss.h"
#include "test_util.h"

namespace sw {
namespace {

using testing::random_tensor;

Tensor indices(const std::vector<int32_t>& v) {
  return Tensor::from_vector<int32_t>(v, {static_cast<int64_t>(v.size()), 1});  // top-1: [N, 1]
}

TEST(Router, LogitsSoftmaxArgmaxAgainstNaiveLoop) {
  const Tensor x = random_tensor({6, 5}, DType::f64, 1),
               w = random_tensor({4, 5}, DType::f64, 2, 2.0);
  const ops::RouterOutput r = ops::route(x, w, {});
  for (int64_t t = 0; t < 6; ++t) {
    std::vector<double> logit(4);
    double z = 0;
    for (int64_t e = 0; e < 4; ++e) {
      for (int64_t i = 0; i < 5; ++i) logit[e] += x.item(t * 5 + i) * w.item(e * 5 + i);
      EXPECT_NEAR(r.logits.item(t * 4 + e), logit[e], 1e-12);
      z += std::exp(logit[e]);
    }
    const int64_t best = std::max_element(logit.begin(), logit.end()) - logit.begin();
    EXPECT_EQ(r.expert_index.item(t), best);
    EXPECT_NEAR(r.gate.item(t), std::exp(logit[best]) / z, 1e-12);
  }
}

TEST(Router, TiesGoToTheLowestExpert) {
  const Tensor x = random_tensor({5, 3}, DType::f32, 3);
  const Tensor w = Tensor::zeros({4, 3}, DType::f32);  // every logit 0: a four-way tie
  const ops::RouterOutput r = ops::route(x, w, {});
  for (int64_t t = 0; t < 5; ++t) {
    EXPECT_EQ(r.expert_index.item(t), 0);
    EXPECT_FLOAT_EQ(static_cast<float>(r.gate.item(t)), 0.25f);
  }
}

// Top-2: the two largest probabilities, best first, ties to the lowest index; normalized
// gates are those probabilities over their sum, raw gates the probabilities.
TEST(Router, TopTwoAgainstASortAndNormalizedGates) {
  const Tensor x = random_tensor({9, 5}, DType::f64, 21), w = random_tensor({6, 5}, DType::f64, 22);
  const ops::RouterOutput raw = ops::route(x, w, {}, nullptr, 2, false);
  const ops::RouterOutput norm = ops::route(x, w, {}, nullptr, 2, true);
  ASSERT_EQ(raw.expert_index.shape(), (Shape{9, 2}));
  EXPECT_FALSE(raw.normalized_gates);
  EXPECT_TRUE(norm.normalized_gates);
  for (int64_t t = 0; t < 9; ++t) {
    std::vector<std::pair<double, int64_t>> p;
    for (int64_t e = 0; e < 6; ++e) p.push_back({-raw.probs.item(t * 6 + e), e});
    std::sort(p.begin(), p.end());
    for (int64_t j = 0; j < 2; ++j) {
      EXPECT_EQ(raw.expert_index.item(t * 2 + j), p[j].second) << t;
      EXPECT_EQ(norm.expert_index.item(t * 2 + j), p[j].second) << t;
      EXPECT_DOUBLE_EQ(raw.gate.item(t * 2 + j), -p[j].first);
      EXPECT_NEAR(norm.gate.item(t * 2 + j), p[j].first / (p[0].first + p[1].first), 1e-15);
    }
  }
  // Ties: a zero router makes every expert equal; the lowest two win.
  const ops::RouterOutput tie =
      ops::route(x, Tensor::zeros({6, 5}, DType::f64), {}, nullptr, 2, true);
  EXPECT_EQ(tie.expert_index.item(0), 0);
  EXPECT_EQ(tie.expert_index.item(1), 1);
  EXPECT_DOUBLE_EQ(tie.gate.item(0), 0.5);
  EXPECT_THROW(ops::route(x, w, {}, nullptr, 7), Error);  // more than the experts
  EXPECT_THROW(ops::route(x, w, {}, nullptr, 0), Error);
}

// The balancing bias steers the choice, not the gate: with expert 0's bias at -1 no token
// picks it (probabilities are at most 1), and each gate is the chosen expert's probability.
TEST(Router, ChoiceBiasSteersTheChoiceNotTheGate) {
  const Tensor x = random_tensor({20, 5}, DType::f64, 41),
               w = random_tensor({4, 5}, DType::f64, 42);
  const Tensor bias = Tensor::from_vector<double>({-1.0, 0.0, 0.0, 0.0}, {4});
  for (int64_t k : {1, 2}) {
    const ops::RouterOutput r = ops::route(x, w, {}, nullptr, k, false, &bias);
    for (int64_t t = 0; t < 20; ++t)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t e = r.expert_index.item(t * k + j);
        EXPECT_NE(e, 0) << "token " << t;
        EXPECT_EQ(r.gate.item(t * k + j), r.probs.item(t * 4 + e));
      }
  }
  EXPECT_THROW(ops::route(x, w, {}, nullptr, 1, false, &w), Error);  // a bias of the wrong shape
}

TEST(Router, JitterMultipliesTheInputWithinEps) {
  const Tensor x = random_tensor({50, 8}, DType::f32, 4), w = random_tensor({4, 8}, DType::f32, 5);
  ops::RouterJitter jitter;
  jitter.eps = 0.01;
  jitter.stream = RandomStream(1, RandomPurpose::kJitter, 0, 0);
  Tensor jittered;
  ops::route(x, w, jitter, &jittered);
  bool changed = false;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double ratio = jittered.item(i) / x.item(i);
    EXPECT_GE(ratio, 0.99 - 1e-6);
    EXPECT_LE(ratio, 1.01 + 1e-6);
    changed |= ratio != 1.0;
  }
  EXPECT_TRUE(changed);
  Tensor plain;
  ops::route(x, w, {}, &plain);
  EXPECT_TRUE(plain.shares_storage_with(x));
}

// The definition: a token is kept iff its inclusive running count for its expert within
// its group is <= capacity.
std::vector<bool> naive_kept(const std::vector<int32_t>& idx, int64_t experts, int64_t group,
                             int64_t capacity) {
  std::vector<bool> kept(idx.size());
  for (size_t start = 0; start < idx.size(); start += group) {
    std::vector<int64_t> count(experts);
    for (size_t t = start; t < start + group; ++t) kept[t] = ++count[idx[t]] <= capacity;
  }
  return kept;
}

TEST(Capacity, AgainstTheDefinitionOnRandomRouting) {
  std::mt19937 gen(7);
  for (int trial = 0; trial < 50; ++trial) {
    const int64_t experts = 1 + gen() % 6, group = 1 + gen() % 12, groups = 1 + gen() % 4;
    const int64_t capacity = gen() % 5;
    std::vector<int32_t> idx(group * groups);
    for (auto& e : idx) e = static_cast<int32_t>(gen() % experts);
    const ops::CapacityAssignment a = ops::assign_capacity(indices(idx), experts, group, capacity);
    const std::vector<bool> kept = naive_kept(idx, experts, group, capacity);
    std::vector<int64_t> next_row(experts);
    int64_t dropped = 0;
    for (size_t t = 0; t < idx.size(); ++t) {
      if (kept[t]) {
        EXPECT_EQ(a.slot.item(t), next_row[idx[t]]++);  // rows in token order
      } else {
        EXPECT_EQ(a.slot.item(t), -1);
        ++dropped;
      }
    }
    EXPECT_EQ(a.dropped, dropped);
    EXPECT_EQ(a.kept_per_expert, next_row);
    // Expert blocks follow one another without gaps.
    int64_t offset = 0;
    for (int64_t e = 0; e < experts; ++e) {
      EXPECT_EQ(a.expert_offset[e], offset);
      offset += next_row[e];
    }
    EXPECT_EQ(a.kept(), offset);
  }
}

TEST(Capacity, AllTokensToOneExpertKeepExactlyCapacityPerGroup) {
  const std::vector<int32_t> idx(12, 2);  // 3 groups of 4, all to expert 2
  const ops::CapacityAssignment a = ops::assign_capacity(indices(idx), 4, 4, 3);
  EXPECT_EQ(a.kept_per_expert, std::vector<int64_t>({0, 0, 9, 0}));  // experts 0, 1, 3 get nothing
  EXPECT_EQ(a.dropped, 3);
  for (int64_t g = 0; g < 3; ++g) EXPECT_EQ(a.slot.item(g * 4 + 3), -1);  // the last of each group
  EXPECT_EQ(a.kept(), 9);
  EXPECT_EQ(a.expert_offset, std::vector<int64_t>({0, 0, 0, 9, 9}));
}

TEST(Capacity, CapacitySmallerThanGroupAndZero) {
  const std::vector<int32_t> idx = {0, 1, 0, 1, 0, 1};
  EXPECT_EQ(ops::assign_capacity(indices(idx), 2, 6, 1).dropped, 4);
  const ops::CapacityAssignment none = ops::assign_capacity(indices(idx), 2, 6, 0);
  EXPECT_EQ(none.dropped, 6);
  EXPECT_EQ(none.kept(), 0);
}

TEST(Capacity, GroupsThatDoNotDivideAreAnError) {
  try {
    ops::assign_capacity(indices({0, 0, 0, 0, 0}), 2, 2, 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("5 tokens do not split into groups of 2"),
              std::string::npos);
  }
  EXPECT_THROW(ops::assign_capacity(indices({0, 3}), 2, 2, 1), Error);  // expert 3 of 2
}

// Expert choice against its definition: per group, each expert keeps the capacity tokens
// with the highest probability for it (ties to the earlier token), in token order in its
// block; assignment (t, j) is kept exactly when expert_index[t, j] chose t.
// route_with_capacity is route, then assign_capacity on its choices (on the cpu it runs
// both; the GPU's one kernel is checked against this in tests/parity): the same
// probabilities, choices and layout; bad groups and capacities are refused by name.
TEST(Capacity, RouteWithCapacityIsRouteThenAssign) {
  const Tensor x = random_tensor({48, 12}, DType::f32, 5);
  const Tensor w = random_tensor({6, 12}, DType::f32, 6);
  const ops::RoutedTokens both = ops::route_with_capacity(x, w, {}, nullptr, 16, 3);
  const ops::RouterOutput r = ops::route(x, w, {});
  const ops::CapacityAssignment a = ops::assign_capacity(r.expert_index, 6, 16, 3);
  EXPECT_EQ(testing::max_relative_error(both.router.probs, r.probs), 0.0);
  EXPECT_EQ(testing::max_relative_error(both.router.expert_index, r.expert_index), 0.0);
  EXPECT_EQ(testing::max_relative_error(both.assignment.row, a.row), 0.0);
  EXPECT_EQ(both.assignment.kept_per_expert, a.kept_per_expert);
  EXPECT_EQ(both.assignment.dropped, a.dropped);
  EXPECT_GT(a.dropped, 0);  // capacity 3 of 16 tokens over 6 experts drops some
  // In the fixed padded layout: the same assignment, padded to the rows an expert may
  // keep at most (capacity 3 x 3 groups); fewer rows are refused.
  const ops::RoutedTokens fixed = ops::route_with_capacity(x, w, {}, nullptr, 16, 3, 9);
  const ops::CapacityAssignment padded = a.padded(r.expert_index, 9);
  EXPECT_EQ(testing::max_relative_error(fixed.assignment.row, padded.row), 0.0);
  EXPECT_EQ(fixed.assignment.expert_offset, padded.expert_offset);
  EXPECT_EQ(fixed.assignment.expert_offset.back(), 6 * 9);
  EXPECT_EQ(fixed.assignment.kept_counts(), a.kept_per_expert);
  EXPECT_EQ(fixed.assignment.dropped_count(), a.dropped);
  EXPECT_NE(testing::error_of([&] {
              ops::route_with_capacity(x, w, {}, nullptr, 16, 3, 8);
            }).find("8 fixed rows per expert cannot hold the 9 tokens"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] {
              ops::route_with_capacity(x, w, {}, nullptr, 10, 3);
            }).find("48 tokens do not split into groups of 10"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] {
              ops::route_with_capacity(x, w, {}, nullptr, 16, -1);
            }).find("capacity must be >= 0"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] {
              ops::route_with_capacity(x, w.view({12, 6}), {}, nullptr, 16, 3);
            }).find("route: expected x [N, d] and weight [E, d]"),
            std::string::npos);
}

TEST(Capacity, ExpertChoiceAgainstTheDefinition) {
  const int64_t n = 12, experts = 4, group = 6, capacity = 2;
  const Tensor x = random_tensor({n, 5}, DType::f64, 31),
               w = random_tensor({experts, 5}, DType::f64, 32);
  ops::RouterOutput r = ops::route(x, w, {}, nullptr, experts);
  // A tie: tokens 0 and 1 equally likely for expert 3 (the earlier one wins).
  double* p = r.probs.data<double>();
  p[0 * experts + 3] = p[1 * experts + 3] = 0.99;
  const ops::CapacityAssignment a =
      ops::assign_expert_choice(r.expert_index, r.probs, group, capacity);
  EXPECT_EQ(a.kept_per_expert, std::vector<int64_t>(experts, 2 * capacity));  // 2 groups
  EXPECT_EQ(a.dropped, n * experts - a.kept());
  const int32_t* idx = r.expert_index.data<int32_t>();
  const int32_t* row = a.row.data<int32_t>();
  for (int64_t e = 0; e < experts; ++e) {
    std::vector<int64_t> want;
    for (int64_t g0 = 0; g0 < n; g0 += group) {
      std::vector<int64_t> t(group);
      std::iota(t.begin(), t.end(), g0);
      std::stable_sort(t.begin(), t.end(), [&](int64_t s, int64_t u) {
        return p[s * experts + e] > p[u * experts + e];
      });
      std::vector<int64_t> top(t.begin(), t.begin() + capacity);
      std::sort(top.begin(), top.end());
      want.insert(want.end(), top.begin(), top.end());
    }
    if (e == 3) {
      EXPECT_EQ(want[0], 0);
    }
    // The block's rows hold exactly those tokens, in token order.
    std::vector<int64_t> got;
    const std::vector<int64_t> tokens = a.token_of_row();
    for (int64_t q = a.expert_offset[e]; q < a.expert_offset[e + 1]; ++q) got.push_back(tokens[q]);
    EXPECT_EQ(got, want) << "expert " << e;
    for (int64_t tok = 0; tok < n; ++tok)
      for (int64_t j = 0; j < experts; ++j)
        if (idx[tok * experts + j] == e) {
          const bool kept = std::find(want.begin(), want.end(), tok) != want.end();
          EXPECT_EQ(row[tok * experts + j] >= 0, kept) << "token " << tok << ", expert " << e;
        }
  }
  // A capacity above the group keeps every token for every expert.
  EXPECT_EQ(ops::assign_expert_choice(r.expert_index, r.probs, group, 100).dropped, 0);
}

TEST(DispatchCombine, KeptTokensScaledByGateDroppedTokensZero) {
  const Tensor x = random_tensor({6, 3}, DType::f64, 8);
  const std::vector<int32_t> idx = {1, 1, 0, 1, 2, 0};
  const Tensor gate = random_tensor({6, 1}, DType::f64, 9);
  const ops::CapacityAssignment a = ops::assign_capacity(indices(idx), 3, 6, 2);  // token 3 dropped
  const Tensor buffer = ops::dispatch(x, a);
  // Grouped layout: expert 0 holds tokens 2, 5; expert 1 tokens 0, 1; expert 2 token 4.
  EXPECT_EQ(buffer.shape(), Shape({5, 3}));
  const int64_t token_of_row[5] = {2, 5, 0, 1, 4};
  EXPECT_EQ(a.token_of_row(), std::vector<int64_t>(token_of_row, token_of_row + 5));
  // As a tensor, offset to the step's tokens; the padded layout's spare rows get the offset.
  const Tensor rows = a.row_tokens(100);
  for (int64_t r = 0; r < 5; ++r) EXPECT_EQ(rows.item(r), 100 + token_of_row[r]);
  const Tensor padded_rows = a.padded(indices(idx), 2).row_tokens(100);
  const int64_t padded_token[6] = {2, 5, 0, 1, 4, 0};  // expert 2's second row is spare
  for (int64_t r = 0; r < 6; ++r) EXPECT_EQ(padded_rows.item(r), 100 + padded_token[r]) << r;
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t i = 0; i < 3; ++i)
      EXPECT_EQ(buffer.item(r * 3 + i), x.item(token_of_row[r] * 3 + i));
  const Tensor y = ops::combine(buffer, gate, a);  // identity experts
  for (int64_t t = 0; t < 6; ++t)
    for (int64_t i = 0; i < 3; ++i)
      EXPECT_DOUBLE_EQ(y.item(t * 3 + i), t == 3 ? 0.0 : gate.item(t) * x.item(t * 3 + i)) << t;
}

// Top-2: capacity serves every token's first choice before any second choice; combine
// sums a token's kept rows by gate, and the backward of dispatch sums them back.
TEST(Capacity, TopTwoServesFirstChoicesFirst) {
  const Tensor idx = Tensor::from_vector<int32_t>({0, 1, 0, 1, 1, 0}, {3, 2});
  const ops::CapacityAssignment a = ops::assign_capacity(idx, 2, 3, 2);
  EXPECT_EQ(a.dropped, 2);  // token 1's and token 2's second choices
  EXPECT_EQ(a.kept_per_expert, (std::vector<int64_t>{2, 2}));
  const std::vector<int32_t> rows = {0, 3, 1, -1, 2, -1};
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(a.row.item(i), rows[i]) << i;
  const Tensor buffer = random_tensor({4, 3}, DType::f64, 12);
  const Tensor gate = random_tensor({3, 2}, DType::f64, 13);
  const Tensor y = ops::combine(buffer, gate, a);
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_DOUBLE_EQ(y.item(c), gate.item(0) * buffer.item(c) + gate.item(1) * buffer.item(9 + c));
    EXPECT_DOUBLE_EQ(y.item(3 + c), gate.item(2) * buffer.item(3 + c));
    EXPECT_DOUBLE_EQ(y.item(6 + c), gate.item(4) * buffer.item(6 + c));
  }
  const Tensor dx = ops::dispatch_backward(buffer, a);
  for (int64_t c = 0; c < 3; ++c) {
    EXPECT_DOUBLE_EQ(dx.item(c), buffer.item(c) + buffer.item(9 + c));
    EXPECT_DOUBLE_EQ(dx.item(3 + c), buffer.item(3 + c));
  }
}

TEST(DispatchCombine, MismatchedInputsAreErrors) {
  const Tensor x = random_tensor({4, 3}, DType::f64, 10);
  const ops::CapacityAssignment a = ops::assign_capacity(indices({0, 1, 1, 0}), 2, 4, 4);
  EXPECT_THROW(ops::dispatch(x.slice(0, 3), a), Error);  // 3 tokens, an assignment for 4
  const Tensor out = ops::dispatch(x, a);
  EXPECT_THROW(ops::combine(out.slice(0, 3), random_tensor({4, 1}, DType::f64, 1), a), Error);
  EXPECT_THROW(ops::combine(out, random_tensor({3, 1}, DType::f64, 1), a), Error);
  ops::CapacityAssignment corrupt = a;
  corrupt.row = Tensor::from_vector<int32_t>({0, 1, 9, 3}, {4, 1});  // row 9 of 4
  EXPECT_THROW(ops::dispatch(x, corrupt), Error);
  EXPECT_THROW(ops::route(x, Tensor::zeros({0, 3}, DType::f64), {}), Error);  // no experts
}

TEST(BalanceLoss, EqualsOneUnderUniformRoutingAndGrowsWithImbalance) {
  const int64_t experts = 4, n = 8;
  // Uniform probabilities and a perfectly balanced assignment: E * sum (1/E)(1/E) = 1.
  ops::BalanceSums uniform(1, experts);
  uniform.add(Tensor::full({n, experts}, DType::f32, 0.25), indices({0, 1, 2, 3, 0, 1, 2, 3}));
  EXPECT_NEAR(uniform.loss(), 1.0, 1e-6);
  // Everything to expert 0 with p_0 = 0.7: E * 1 * 0.7.
  Tensor skewed = Tensor::full({n, experts}, DType::f64, 0.1);
  for (int64_t t = 0; t < n; ++t) skewed.data<double>()[t * experts] = 0.7;
  ops::BalanceSums collapsed(1, experts);
  collapsed.add(skewed, indices(std::vector<int32_t>(n, 0)));
  EXPECT_NEAR(collapsed.loss(), 4 * 0.7, 1e-12);
  // Two groups average.
  ops::BalanceSums two(2, experts);
  two.add(skewed, indices({0, 0, 0, 0, 0, 1, 2, 3}));
  const double g0 = 4 * (1.0 * 0.7), g1 = 4 * (0.25 * 0.7 + 3 * 0.25 * 0.1);
  EXPECT_NEAR(two.loss(), (g0 + g1) / 2, 1e-12);
  // Sums accumulate over calls (layers): a second, uniform layer joins each group's
  // counts and probabilities. Group 0 then has counts (5, 1, 1, 1) / 8 and mean
  // probabilities (0.7 + 0.25, 0.1 + 0.25, ...) / 2; group 1 is balanced in both layers.
  two.add(Tensor::full({n, experts}, DType::f64, 0.25), indices({0, 1, 2, 3, 0, 1, 2, 3}));
  const double f0[4] = {5 / 8.0, 1 / 8.0, 1 / 8.0, 1 / 8.0}, p0[4] = {0.475, 0.175, 0.175, 0.175};
  double a0 = 0, a1 = 0;
  for (int e = 0; e < 4; ++e) {
    a0 += 4 * f0[e] * p0[e];
    a1 += 4 * 0.25 * (e == 0 ? 0.475 : 0.175);
  }
  EXPECT_NEAR(two.loss(), (a0 + a1) / 2, 1e-12);
  EXPECT_THROW(two.add(skewed, indices({0, 0, 0, 0, 0, 1, 2, 4})), Error);  // expert 4 of 4
  EXPECT_THROW(ops::BalanceSums(0, 4), Error);
}

TEST(ZLoss, MeanSquaredLogsumexp) {
  const Tensor logits = random_tensor({5, 3}, DType::f64, 10, 3.0);
  double expected = 0;
  for (int64_t t = 0; t < 5; ++t) {
    double z = 0;
    for (int64_t e = 0; e < 3; ++e) z += std::exp(logits.item(t * 3 + e));
    expected += std::log(z) * std::log(z) / 5;
  }
  EXPECT_NEAR(ops::router_z_loss(logits), expected, 1e-12);
}

TEST(RoutingStats, CountsAndEntropy) {
  const Tensor x = random_tensor({10, 4}, DType::f64, 11),
               w = random_tensor({3, 4}, DType::f64, 12);
  const ops::RouterOutput r = ops::route(x, w, {});
  const ops::CapacityAssignment a = ops::assign_capacity(r.expert_index, 3, 10, 2);
  const ops::RoutingStats s = ops::routing_stats(r, a);
  int64_t total = 0, kept = 0;
  double entropy = 0;
  for (int64_t e = 0; e < 3; ++e) {
    total += s.tokens_per_expert[e];
    kept += s.kept_per_expert[e];
    EXPECT_EQ(s.kept_per_expert[e], std::min<int64_t>(s.tokens_per_expert[e], 2));
  }
  for (int64_t i = 0; i < 30; ++i) entropy -= r.probs.item(i) * std::log(r.probs.item(i)) / 10;
  EXPECT_EQ(total, 10);
  EXPECT_DOUBLE_EQ(s.dropped_fraction, (10 - kept) / 10.0);
  EXPECT_NEAR(s.router_entropy, entropy, 1e-12);
}

}  // namespace
}  // namespace sw
