// Every op against a naive loop in f64, in both f32 and f64.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/ops/activation.h"
#include "core/ops/attention.h"
#include "core/ops/dropout.h"
#include "core/ops/embedding.h"
#include "core/ops/gemm.h"
#include "core/ops/loss.h"
#include "core/ops/norm.h"
#include "core/ops/position_bias.h"
#include "core/ops/softmax.h"
#include "test_util.h"

namespace sw {
namespace {

using testing::max_relative_error;
using testing::random_tensor;

class OpsTest : public ::testing::TestWithParam<DType> {
 protected:
  DType dtype() const { return GetParam(); }
  double tolerance() const { return dtype() == DType::f32 ? 2e-6 : 1e-13; }
  Tensor random(const Shape& shape, uint32_t seed, double std = 1.0) const {
    return random_tensor(shape, dtype(), seed, std);
  }
};

INSTANTIATE_TEST_SUITE_P(Dtypes, OpsTest, ::testing::Values(DType::f32, DType::f64),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

// c[i][j] = alpha * sum_k A(i,k) B(k,j) + beta * c0[i][j], indices honouring transposes.
Tensor naive_matmul(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& c0,
                    double alpha, double beta) {
  const int64_t m = ta ? a.dim(1) : a.dim(0), k = ta ? a.dim(0) : a.dim(1);
  const int64_t n = tb ? b.dim(0) : b.dim(1);
  Tensor c = Tensor::empty({m, n}, DType::f64);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += a.item(ta ? p * a.dim(1) + i : i * k + p) * b.item(tb ? j * k + p : p * n + j);
      c.data<double>()[i * n + j] = alpha * s + beta * c0.item(i * n + j);
    }
  return c;
}

// TF32 is a GPU switch: it can be turned on only where CUDA is built, and off anywhere.
TEST(Tf32, OnlyWhereCudaIsBuilt) {
  EXPECT_FALSE(sw::ops::allow_tf32());
  if (sw::cuda_built()) {
    sw::ops::set_allow_tf32(true);
    EXPECT_TRUE(sw::ops::allow_tf32());
  } else {
    EXPECT_THROW(sw::ops::set_allow_tf32(true), sw::Error);
    EXPECT_FALSE(sw::ops::allow_tf32());
  }
  sw::ops::set_allow_tf32(false);
  EXPECT_FALSE(sw::ops::allow_tf32());
}

// The cpu's expert GEMMs are always grouped (nothing is measured), and a layout question
// that makes no sense is an error naming it.
TEST(ExpertLayout, TheCpuGroupsAndBadShapesAreRefused) {
  const sw::Tensor w = sw::Tensor::zeros({3, 16, 8}, sw::DType::f32);
  EXPECT_EQ(sw::ops::choose_expert_layout(w, true, {3, 0, 5}, true),
            sw::ops::ExpertLayout::kPerExpert);
  if (!sw::cuda_built()) {
    EXPECT_TRUE(sw::ops::expert_layout_table().empty());
  }
  EXPECT_NE(sw::testing::error_of([&] {
              sw::ops::choose_expert_layout(w, true, {3, 5}, true);
            }).find("expected a weight [E, ., .] for 2 experts"),
            std::string::npos);
  EXPECT_NE(sw::testing::error_of([&] {
              sw::ops::choose_expert_layout(w, true, {3, -1, 2}, true);
            }).find("an expert keeps -1 rows"),
            std::string::npos);
}

// A ReLU epilogue on the cpu: the GEMM, then max(0, .), against the f64 reference.
TEST(BatchedMatmul, ReluEpilogueClampsTheProducts) {
  const sw::Tensor a = sw::testing::random_tensor({2, 5, 7}, sw::DType::f64, 1),
                   b = sw::testing::random_tensor({2, 6, 7}, sw::DType::f64, 2);
  sw::Tensor plain = sw::Tensor::empty({2, 5, 6}, sw::DType::f64),
             fused = sw::Tensor::empty({2, 5, 6}, sw::DType::f64);
  sw::ops::batched_matmul(a, false, b, true, plain);
  sw::ops::batched_matmul(a, false, b, true, fused, sw::ops::Epilogue::kRelu);
  int64_t clamped = 0;
  for (int64_t i = 0; i < plain.numel(); ++i) {
    EXPECT_EQ(fused.item(i), std::max(plain.item(i), 0.0)) << i;
    clamped += plain.item(i) < 0;
  }
  EXPECT_GT(clamped, 0);
}

// The activation epilogues and their backward on the cpu, in f64: the forward is the
// plain GEMM through max(0, .) or the tanh GELU written out here, the backward the next
// GEMM times the activation's slope, taken by central differences of that forward.
TEST(BatchedMatmul, ActivationEpiloguesAndTheirBackward) {
  using sw::ops::Epilogue;
  auto gelu = [](double v) {
    return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
  };
  const sw::Tensor a = sw::testing::random_tensor({2, 5, 7}, sw::DType::f64, 1),
                   b = sw::testing::random_tensor({2, 6, 7}, sw::DType::f64, 2),
                   dy = sw::testing::random_tensor({2, 5, 4}, sw::DType::f64, 3),
                   w = sw::testing::random_tensor({2, 4, 6}, sw::DType::f64, 4);
  sw::Tensor pre = sw::Tensor::empty({2, 5, 6}, sw::DType::f64),
             grad = sw::Tensor::empty({2, 5, 6}, sw::DType::f64);
  sw::ops::batched_matmul(a, false, b, true, pre);
  sw::ops::batched_matmul(dy, false, w, false, grad);
  for (Epilogue act : {Epilogue::kRelu, Epilogue::kGelu}) {
    SCOPED_TRACE(act == Epilogue::kRelu ? "relu" : "gelu");
    auto f = [&](double v) { return act == Epilogue::kRelu ? std::max(v, 0.0) : gelu(v); };
    sw::Tensor c = sw::Tensor::empty({2, 5, 6}, sw::DType::f64),
               plain = sw::Tensor::empty({2, 5, 6}, sw::DType::f64),
               d_pre = sw::Tensor::empty({2, 5, 6}, sw::DType::f64);
    sw::ops::ActivationSaved saved;
    sw::ops::batched_matmul_activation(a, false, b, true, c, act, saved);
    sw::ops::batched_matmul(a, false, b, true, plain, act);
    EXPECT_EQ(saved.activation, act);
    EXPECT_FALSE(saved.relu_mask.defined());  // the mask is cuBLASLt's, a GPU's only
    sw::ops::batched_matmul_activation_backward(dy, false, w, false, d_pre, saved);
    const double h = 1e-6;
    for (int64_t i = 0; i < c.numel(); ++i) {
      const double v = pre.item(i);
      EXPECT_NEAR(c.item(i), f(v), 1e-12 * (1 + std::abs(v))) << i;
      EXPECT_EQ(plain.item(i), c.item(i)) << i;  // the epilogue alone gives the same
      if (std::abs(v) < 1e-4) continue;          // ReLU's kink
      const double slope = (f(v + h) - f(v - h)) / (2 * h);
      EXPECT_NEAR(d_pre.item(i), grad.item(i) * slope, 1e-7 * (1 + std::abs(grad.item(i)))) << i;
    }
  }
  // What makes no sense is refused by name.
  sw::Tensor c = sw::Tensor::empty({2, 5, 6}, sw::DType::f64);
  sw::ops::ActivationSaved saved;
  EXPECT_NE(sw::testing::error_of([&] {
              sw::ops::batched_matmul_activation(a, false, b, true, c, Epilogue::kNone, saved);
            }).find("the activation must be kRelu or kGelu"),
            std::string::npos);
  EXPECT_NE(sw::testing::error_of([&] {
              sw::ops::batched_matmul_activation_backward(dy, false, w, false, c, saved);
            }).find("batched_matmul_activation_backward: the activation must be"),
            std::string::npos);
  sw::ops::batched_matmul_activation(a, false, b, true, c, Epilogue::kGelu, saved);
  saved.pre_activation = saved.pre_activation.view({2, 6, 5});
  EXPECT_NE(sw::testing::error_of([&] {
              sw::ops::batched_matmul_activation_backward(dy, false, w, false, c, saved);
            }).find("the forward's pre-activation"),
            std::string::npos);
  sw::Tensor wrong = sw::Tensor::empty({2, 5, 5}, sw::DType::f64);
  EXPECT_NE(sw::testing::error_of([&] {
              sw::ops::batched_matmul_activation(a, false, b, true, wrong, Epilogue::kRelu, saved);
            }).find("batched_matmul_activation: output"),
            std::string::npos);
}

TEST_P(OpsTest, MatmulAllTransposes) {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      const Tensor a = random(ta ? Shape{7, 5} : Shape{5, 7}, 1);
      const Tensor b = random(tb ? Shape{9, 7} : Shape{7, 9}, 2);
      Tensor c = random({5, 9}, 3);
      const Tensor expected = naive_matmul(a, ta, b, tb, c, 0.5, -2.0);
      ops::matmul(a, ta, b, tb, c, 0.5, -2.0);
      EXPECT_LE(max_relative_error(c, expected), tolerance()) << ta << tb;
    }
  EXPECT_THROW(ops::matmul(random({2, 3}, 1), false, random({2, 3}, 2), false), Error);
}

// Shapes that reach every tiled path of the CPU GEMM: several tiles of unequal sizes,
// BLIS's packed path (tiles of 64+ rows and columns) and its unpacked one, Eigen's small
// tiles, the 128-wide tiles of one row of tiles, and an empty sum (k = 0); the output
// poisoned with NaN where nothing may be read (beta 0), accumulated where beta is 1.
TEST_P(OpsTest, MatmulOverEveryTilePath) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  struct Case {
    int64_t m, k, n;
  };
  // 260 x 64 x 1030: packed BLIS tiles and Eigen's edge tiles; 32 x 768 x 700: 128-wide
  // tiles of 32 rows through BLIS's unpacked path; 5 x 0 x 7: the empty sum.
  for (Case s : {Case{260, 64, 1030}, Case{32, 768, 700}, Case{5, 0, 7}})
    for (double beta : {0.0, 1.0}) {
      const Tensor a = random({s.m, s.k}, 40), b = random({s.n, s.k}, 41);
      const Tensor c0 = beta == 0 ? Tensor::zeros({s.m, s.n}, DType::f64) : random({s.m, s.n}, 42);
      Tensor c = beta == 0 ? Tensor::full({s.m, s.n}, dtype(), nan) : c0.clone();
      const Tensor want = naive_matmul(a, false, b, true, c0, 1.0, beta);
      ops::matmul(a, false, b, true, c, 1.0, beta);
      EXPECT_LE(max_relative_error(c, want), tolerance() * 10)
          << s.m << "x" << s.k << "x" << s.n << " beta " << beta;
    }
}

// Groups of every kind at once, output poisoned with NaN: empty; 5 rows (streamed); 260
// rows (a packed BLIS tile, 44-column edge tiles through BLIS's unpacked path, Eigen's
// 4-row edge tiles); 40 rows (one row of 128-wide tiles, BLIS unpacked, and an Eigen
// edge tile).
TEST_P(OpsTest, GroupedMatmulOverEveryTilePath) {
  const std::vector<int64_t> offsets = {0, 0, 5, 265, 305};
  const int64_t k = 416, n = 300, groups = 4;
  const Tensor a = random({offsets.back(), k}, 43), b = random({groups, n, k}, 44);
  Tensor c = Tensor::full({offsets.back(), n}, dtype(), std::numeric_limits<double>::quiet_NaN());
  ops::grouped_matmul(a, b, true, c, offsets);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t rows = offsets[g + 1] - offsets[g];
    if (rows == 0) continue;
    EXPECT_LE(max_relative_error(c.slice(offsets[g], offsets[g + 1]),
                                 naive_matmul(a.slice(offsets[g], offsets[g + 1]), false,
                                              b.slice(g, g + 1).view({n, k}), true,
                                              Tensor::zeros({rows, n}, DType::f64), 1, 0)),
              tolerance() * 10)
        << "group " << g << " of " << rows << " rows";
  }
}

TEST_P(OpsTest, LinearIsXTimesWTransposed) {
  const Tensor x = random({2, 3, 6}, 4), w = random({4, 6}, 5);
  const Tensor y = ops::linear(x, w);
  EXPECT_EQ(y.shape(), Shape({2, 3, 4}));
  EXPECT_LE(
      max_relative_error(y.view({6, 4}), naive_matmul(x.view({6, 6}), false, w, true,
                                                      Tensor::zeros({6, 4}, DType::f64), 1, 0)),
      tolerance());
  EXPECT_THROW(ops::linear(x, random({4, 5}, 6)), Error);
}

TEST_P(OpsTest, BatchedMatmul) {
  const Tensor a = random({3, 4, 5}, 7), b = random({3, 6, 5}, 8);
  Tensor c = random({3, 4, 6}, 9);  // poisoned: every element must be written
  ops::batched_matmul(a, false, b, true, c);
  for (int64_t e = 0; e < 3; ++e)
    EXPECT_LE(max_relative_error(c.slice(e, e + 1).view({4, 6}),
                                 naive_matmul(a.slice(e, e + 1).view({4, 5}), false,
                                              b.slice(e, e + 1).view({6, 5}), true,
                                              Tensor::zeros({4, 6}, DType::f64), 1, 0)),
              tolerance());
}

TEST_P(OpsTest, GroupedMatmulOverVariableBlocks) {
  const std::vector<int64_t> offsets = {0, 3, 3, 7};  // the middle group is empty
  const Tensor a = random({7, 5}, 10), b = random({3, 4, 5}, 11);
  Tensor c = random({7, 4}, 12);  // poisoned
  ops::grouped_matmul(a, b, true, c, offsets);
  for (int64_t g = 0; g < 3; ++g) {
    const int64_t rows = offsets[g + 1] - offsets[g];
    if (rows == 0) continue;
    EXPECT_LE(max_relative_error(c.slice(offsets[g], offsets[g + 1]),
                                 naive_matmul(a.slice(offsets[g], offsets[g + 1]), false,
                                              b.slice(g, g + 1).view({4, 5}), true,
                                              Tensor::zeros({rows, 4}, DType::f64), 1, 0)),
              tolerance());
  }
  EXPECT_THROW(ops::grouped_matmul(a, b, true, c, {0, 3, 7}), Error);     // too few offsets
  EXPECT_THROW(ops::grouped_matmul(a, b, true, c, {0, 4, 3, 7}), Error);  // decreasing
  EXPECT_THROW(ops::grouped_matmul(a, b, true, c, {0, 3, 3, 8}), Error);  // past the rows
}

// Many small groups take the one-thread-per-group path; the weight gradient accumulates.
TEST_P(OpsTest, GroupedMatmulAndWeightGradientOverManySmallGroups) {
  const std::vector<int64_t> offsets = {0, 2, 2, 5, 6, 6, 9, 10};
  const int64_t groups = 7, rows = 10;
  const Tensor a = random({rows, 5}, 20), b = random({groups, 4, 5}, 21);
  Tensor c = random({rows, 4}, 22);
  ops::grouped_matmul(a, b, true, c, offsets);
  Tensor dw = random({groups, 4, 5}, 23);
  const Tensor dw_before = dw.clone();
  ops::grouped_weight_gradient(c, a, offsets, dw);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t n = offsets[g + 1] - offsets[g];
    const Tensor dw_g = dw.slice(g, g + 1).view({4, 5}),
                 before_g = dw_before.slice(g, g + 1).view({4, 5});
    if (n == 0) {
      EXPECT_EQ(max_relative_error(dw_g, before_g), 0.0) << "empty group " << g << " changed";
      continue;
    }
    const Tensor expected_c =
        naive_matmul(a.slice(offsets[g], offsets[g + 1]), false, b.slice(g, g + 1).view({4, 5}),
                     true, Tensor::zeros({n, 4}, DType::f64), 1, 0);
    EXPECT_LE(max_relative_error(c.slice(offsets[g], offsets[g + 1]), expected_c), tolerance());
    EXPECT_LE(max_relative_error(dw_g, naive_matmul(c.slice(offsets[g], offsets[g + 1]), true,
                                                    a.slice(offsets[g], offsets[g + 1]), false,
                                                    before_g.to(DType::f64), 1, 1)),
              tolerance());
  }
  EXPECT_THROW(ops::grouped_weight_gradient(c, a, {0, 10}, dw), Error);
  // b not transposed ([G, k, n]).
  const Tensor b_kn = random({groups, 5, 4}, 24);
  Tensor c_kn = random({rows, 4}, 25);
  ops::grouped_matmul(a, b_kn, false, c_kn, offsets);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t n = offsets[g + 1] - offsets[g];
    if (n == 0) continue;
    EXPECT_LE(max_relative_error(c_kn.slice(offsets[g], offsets[g + 1]),
                                 naive_matmul(a.slice(offsets[g], offsets[g + 1]), false,
                                              b_kn.slice(g, g + 1).view({5, 4}), false,
                                              Tensor::zeros({n, 4}, DType::f64), 1, 0)),
              tolerance());
  }
}

TEST_P(OpsTest, RmsNorm) {
  const Tensor x = random({3, 4, 16}, 10, 3.0), w = random({16}, 11);
  Tensor inv;
  const Tensor y = ops::rms_norm(x, w, 1e-6, &inv);
  Tensor expected = Tensor::empty(x.shape(), DType::f64);
  for (int64_t r = 0; r < 12; ++r) {
    double ms = 0;
    for (int64_t i = 0; i < 16; ++i) ms += x.item(r * 16 + i) * x.item(r * 16 + i) / 16;
    EXPECT_NEAR(inv.item(r), 1 / std::sqrt(ms + 1e-6), tolerance() * 10);
    for (int64_t i = 0; i < 16; ++i)
      expected.data<double>()[r * 16 + i] = w.item(i) * x.item(r * 16 + i) / std::sqrt(ms + 1e-6);
  }
  EXPECT_LE(max_relative_error(y, expected), tolerance());
  EXPECT_THROW(ops::rms_norm(x, random({15}, 1), 1e-6), Error);
}

TEST_P(OpsTest, Activations) {
  const Tensor x = random({5, 7}, 12, 2.0), x2 = random({5, 7}, 13);
  const Tensor r = ops::relu(x), g = ops::gelu(x), gg = ops::gated_gelu(x, x2);
  const Tensor exact = ops::gelu_exact(x);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double v = x.item(i);
    const double gelu = 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
    EXPECT_EQ(r.item(i), v > 0 ? v : 0.0);
    EXPECT_NEAR(g.item(i), gelu, tolerance() * 4);
    EXPECT_NEAR(exact.item(i), 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))), tolerance() * 4);
    EXPECT_NEAR(gg.item(i), gelu * x2.item(i), tolerance() * 8);
  }
}

TEST_P(OpsTest, SoftmaxAndLogsumexp) {
  const Tensor x = random({4, 9}, 14, 5.0);
  const Tensor p = ops::softmax(x), lse = ops::logsumexp(x);
  for (int64_t r = 0; r < 4; ++r) {
    double z = 0;
    for (int64_t j = 0; j < 9; ++j) z += std::exp(x.item(r * 9 + j));
    EXPECT_NEAR(lse.item(r), std::log(z), tolerance() * 10);
    for (int64_t j = 0; j < 9; ++j)
      EXPECT_NEAR(p.item(r * 9 + j), std::exp(x.item(r * 9 + j)) / z, tolerance());
  }
  EXPECT_THROW(ops::logsumexp(Tensor::full({}, dtype(), 1.0)), Error);  // 0-d
  // Stable for large logits.
  const Tensor big = Tensor::full({1, 3}, dtype(), 1000.0);
  EXPECT_NEAR(ops::softmax(big).item(0), 1.0 / 3, tolerance());
  EXPECT_NEAR(ops::logsumexp(big).item(0), 1000.0 + std::log(3.0), 1e-3);
}

TEST_P(OpsTest, Embedding) {
  const Tensor table = random({10, 4}, 15);
  const Tensor ids = Tensor::from_vector<int32_t>({3, 0, 9, 3}, {2, 2});
  const Tensor y = ops::embedding(table, ids);
  EXPECT_EQ(y.shape(), Shape({2, 2, 4}));
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(y.item(t * 4 + i), table.item(ids.item(t) * 4 + i));
  try {
    ops::embedding(table, Tensor::from_vector<int32_t>({1, 10}, {2}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kOutOfRange);
    EXPECT_NE(std::string(e.what()).find("token id 10 at flat position 1"), std::string::npos)
        << e.what();
  }
}

TEST(PositionBuckets, HandComputedValues) {
  // 32 buckets, max distance 128 (the hub checkpoints). Encoder: 16 per direction, 8 exact;
  // e.g. rel -20: 8 + trunc(log(20/8) / log(128/8) * 8) = 8 + trunc(2.64) = 10.
  const std::pair<int64_t, int32_t> encoder[] = {{0, 0},    {-1, 1},    {1, 17},   {-7, 7},
                                                 {7, 23},   {-8, 8},    {-20, 10}, {20, 26},
                                                 {100, 31}, {-1000, 15}};
  for (const auto& [rel, bucket] : encoder)
    EXPECT_EQ(ops::relative_position_bucket(rel, true, 32, 128), bucket) << rel;
  // Decoder: 32 buckets for keys at or before the query, 16 exact; later keys share 0.
  const std::pair<int64_t, int32_t> decoder[] = {{5, 0},    {0, 0},    {-3, 3},   {-15, 15},
                                                 {-16, 16}, {-40, 23}, {-200, 31}};
  for (const auto& [rel, bucket] : decoder)
    EXPECT_EQ(ops::relative_position_bucket(rel, false, 32, 128), bucket) << rel;
  EXPECT_THROW(ops::relative_position_bucket(1, true, 2, 128), Error);
  EXPECT_THROW(ops::relative_position_bucket(1, true, 32, 8), Error);
}

TEST_P(OpsTest, PositionBiasLayout) {
  const Tensor table = random({8, 3}, 16);
  const Tensor bias = ops::position_bias(table, 4, 5, true, 16);
  EXPECT_EQ(bias.shape(), Shape({3, 4, 5}));
  for (int64_t h = 0; h < 3; ++h)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 5; ++j)
        EXPECT_EQ(bias.item((h * 4 + i) * 5 + j),
                  table.item(ops::relative_position_bucket(j - i, true, 8, 16) * 3 + h));
}

// A window of query rows (decoding asks for one per step) equals those rows of the square
// table, in both directions.
TEST(PositionBias, QueryRowsEqualTheSquareTablesRows) {
  const Tensor table = random_tensor({32, 3}, DType::f64, 21);
  for (bool bidirectional : {true, false}) {
    const Tensor square = ops::position_bias(table, 40, 40, bidirectional, 128);
    for (int64_t q : {0, 7, 39}) {
      const Tensor row = ops::position_bias(table, 1, 40, bidirectional, 128, q);
      for (int64_t h = 0; h < 3; ++h)
        for (int64_t j = 0; j < 40; ++j)
          EXPECT_EQ(row.item(h * 40 + j), square.item((h * 40 + q) * 40 + j)) << q << " " << j;
    }
  }
  EXPECT_THROW(ops::position_bias(table, 1, 4, true, 128, -1), Error);
}

// position_bias is linear in the table; its backward is the adjoint:
// <dbias, bias(table)> = <dtable, table>, here for 2 of 4 heads from head 1 (model
// parallelism's slice) in both directions.
TEST(PositionBias, BackwardIsTheAdjoint) {
  for (bool bidirectional : {true, false}) {
    Tensor table = random_tensor({8, 4}, DType::f64, 17);
    const Tensor part = random_tensor({8, 2}, DType::f64, 18);  // heads 1 and 2 of the table
    for (int64_t b = 0; b < 8; ++b)
      for (int64_t h = 0; h < 2; ++h) table.data<double>()[b * 4 + 1 + h] = part.item(b * 2 + h);
    const Tensor dbias = random_tensor({2, 5, 6}, DType::f64, 19);
    Tensor dtable = Tensor::zeros({8, 4}, DType::f64);
    ops::position_bias_backward(dbias, bidirectional, 16, 1, dtable);
    const Tensor bias = ops::position_bias(part, 5, 6, bidirectional, 16);
    double lhs = 0, rhs = 0;
    for (int64_t i = 0; i < dbias.numel(); ++i) lhs += dbias.item(i) * bias.item(i);
    for (int64_t i = 0; i < dtable.numel(); ++i) rhs += dtable.item(i) * table.item(i);
    EXPECT_NEAR(lhs, rhs, 1e-12 * std::abs(lhs) + 1e-12) << bidirectional;
    for (int64_t b = 0; b < 8; ++b) {  // heads outside the slice get nothing
      EXPECT_EQ(dtable.item(b * 4), 0.0);
      EXPECT_EQ(dtable.item(b * 4 + 3), 0.0);
    }
  }
  Tensor wrong = Tensor::zeros({8, 2}, DType::f64);
  EXPECT_THROW(
      ops::position_bias_backward(random_tensor({2, 5, 6}, DType::f64, 20), true, 16, 1, wrong),
      Error);
}

// Naive attention in f64 with the same masking rule (lowest f32 added where masked).
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                       const Tensor* bias, const Tensor* mask, bool causal) {
  const int64_t B = q.dim(0), Tq = q.dim(1), inner = q.dim(2), Tk = k.dim(1), dk = inner / heads;
  Tensor out = Tensor::zeros({B, Tq, inner}, DType::f64);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < Tq; ++i) {
        std::vector<double> s(Tk);
        double m = -INFINITY;
        for (int64_t j = 0; j < Tk; ++j) {
          double dot = 0;
          for (int64_t c = 0; c < dk; ++c)
            dot += q.item((b * Tq + i) * inner + h * dk + c) *
                   k.item((b * Tk + j) * inner + h * dk + c);
          if (bias) dot += bias->item((h * Tq + i) * Tk + j);
          if ((mask && mask->item(b * Tk + j) == 0) || (causal && j > i))
            dot += std::numeric_limits<float>::lowest();
          s[j] = dot;
          m = std::max(m, dot);
        }
        double z = 0;
        for (double& e : s) z += (e = std::exp(e - m));
        for (int64_t c = 0; c < dk; ++c) {
          double acc = 0;
          for (int64_t j = 0; j < Tk; ++j)
            acc += s[j] / z * v.item((b * Tk + j) * inner + h * dk + c);
          out.data<double>()[(b * Tq + i) * inner + h * dk + c] = acc;
        }
      }
  return out;
}

TEST_P(OpsTest, AttentionSelfCausalCross) {
  const int64_t B = 2, T = 5, S = 6, H = 3, dk = 4;
  const Tensor q = random({B, T, H * dk}, 17), k = random({B, S, H * dk}, 18),
               v = random({B, S, H * dk}, 19);
  const Tensor bias = random({H, T, S}, 20);
  const Tensor mask = Tensor::from_vector<int32_t>({1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0}, {B, S});
  for (bool causal : {false, true})
    for (bool with_bias : {false, true}) {
      ops::AttentionInputs in;
      in.bias = with_bias ? &bias : nullptr;
      in.key_mask = &mask;
      in.causal = causal;
      Tensor probs;
      const Tensor out = ops::attention(q, k, v, H, in, &probs);
      EXPECT_LE(max_relative_error(out, naive_attention(q, k, v, H, in.bias, &mask, causal)),
                tolerance() * 5)
          << "causal " << causal << " bias " << with_bias;
      // Masked keys get exactly zero probability.
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t i = 0; i < T; ++i)
            for (int64_t j = 0; j < S; ++j)
              if (mask.item(b * S + j) == 0 || (causal && j > i)) {
                EXPECT_EQ(probs.item(((b * H + h) * T + i) * S + j), 0.0);
              }
    }
  EXPECT_THROW(ops::attention(q, k, v, 5, {}), Error);  // 12 features do not split into 5 heads
}

// A decoding cache: k and v hold 7 positions per sequence, the first 4 of them keys; the
// rest (garbage) must not be read. Against the naive loop on the 4 keys copied out.
TEST_P(OpsTest, AttentionOverTheFilledPartOfACache) {
  const int64_t B = 2, Tq = 1, capacity = 7, keys = 4, H = 3, dk = 4;
  const Tensor q = random({B, Tq, H * dk}, 31);
  Tensor k = random({B, capacity, H * dk}, 32), v = random({B, capacity, H * dk}, 33);
  Tensor k_keys = Tensor::empty({B, keys, H * dk}, dtype()), v_keys = k_keys.clone();
  for (int64_t b = 0; b < B; ++b) {
    k_keys.view({B * keys, H * dk})
        .slice(b * keys, (b + 1) * keys)
        .copy_from(k.view({B * capacity, H * dk}).slice(b * capacity, b * capacity + keys));
    v_keys.view({B * keys, H * dk})
        .slice(b * keys, (b + 1) * keys)
        .copy_from(v.view({B * capacity, H * dk}).slice(b * capacity, b * capacity + keys));
    const Tensor garbage = Tensor::full({capacity - keys, H * dk}, dtype(), 1e30);
    for (Tensor* t : {&k, &v})  // where no key is: must not be read
      t->view({B * capacity, H * dk})
          .slice(b * capacity + keys, (b + 1) * capacity)
          .copy_from(garbage);
  }
  const Tensor bias = random({H, Tq, keys}, 34);
  ops::AttentionInputs in;
  in.bias = &bias;
  in.key_length = keys;
  Tensor probs;
  const Tensor out = ops::attention(q, k, v, H, in, &probs);
  EXPECT_EQ(probs.shape(), (Shape{B, H, Tq, keys}));
  EXPECT_LE(max_relative_error(out, naive_attention(q, k_keys, v_keys, H, &bias, nullptr, false)),
            tolerance() * 5);
  for (int64_t bad : {int64_t{0}, capacity + 1}) {
    in.key_length = bad;
    EXPECT_NE(testing::error_of([&] { ops::attention(q, k, v, H, in); }).find("key_length"),
              std::string::npos);
  }
  in.key_length = keys;
  EXPECT_NE(testing::error_of([&] {
              ops::attention_backward(out, q, k, v, probs, H, in);
            }).find("key_length"),
            std::string::npos);
}

TEST_P(OpsTest, CrossEntropyWithIgnoreIndex) {
  const Tensor logits = random({4, 7}, 21, 3.0);
  const Tensor labels = Tensor::from_vector<int32_t>({2, -100, 6, 0}, {4});
  const ops::CrossEntropy ce = ops::cross_entropy(logits, labels);
  double total = 0;
  for (int64_t r : {0, 2, 3}) {
    double z = 0;
    for (int64_t j = 0; j < 7; ++j) z += std::exp(logits.item(r * 7 + j));
    total += std::log(z) - logits.item(r * 7 + labels.item(r));
  }
  EXPECT_EQ(ce.count, 3);
  EXPECT_NEAR(ce.loss, total / 3, 1e-5);
  EXPECT_THROW(ops::cross_entropy(logits, Tensor::from_vector<int32_t>({7, 0, 0, 0}, {4})), Error);
  EXPECT_EQ(ops::cross_entropy(logits, Tensor::full({4}, DType::i32, -100)).count, 0);
}

// Distillation's loss against a naive loop: the cross-entropy of the mixed target
// (1 - w) onehot + w q, from log-probabilities computed here; w = 0 is plain cross-entropy.
TEST_P(OpsTest, DistillationCrossEntropyAgainstTheMixedTarget) {
  const Tensor logits = random({4, 7}, 22, 3.0);
  const Tensor labels = Tensor::from_vector<int32_t>({2, -100, 6, 0}, {4});
  const Tensor q = ops::softmax(random({4, 7}, 23, 2.0));
  for (double w : {0.0, 0.25, 1.0}) {
    SCOPED_TRACE(w);
    double total = 0;
    for (int64_t r : {0, 2, 3}) {
      double z = 0;
      for (int64_t j = 0; j < 7; ++j) z += std::exp(logits.item(r * 7 + j));
      for (int64_t j = 0; j < 7; ++j) {
        const double target = (1 - w) * (j == labels.item(r)) + w * q.item(r * 7 + j);
        total -= target * (logits.item(r * 7 + j) - std::log(z));
      }
    }
    const ops::CrossEntropy ce = ops::distillation_cross_entropy(logits, labels, q, w);
    EXPECT_EQ(ce.count, 3);
    EXPECT_NEAR(ce.loss, total / 3, 1e-5);
  }
  EXPECT_NEAR(ops::distillation_cross_entropy(logits, labels, q, 0.0).loss,
              ops::cross_entropy(logits, labels).loss, 1e-12);
  EXPECT_THROW(ops::distillation_cross_entropy(logits, labels, q, 1.5), Error);  // weight
  EXPECT_THROW(ops::distillation_cross_entropy(logits, labels, random({4, 6}, 24, 1.0), 0.25),
               Error);  // shape
}

TEST_P(OpsTest, DropoutIsSeededAndUnbiased) {
  const Tensor ones = Tensor::full({100000}, dtype(), 1.0);
  ops::DropoutSpec spec;
  spec.rate = 0.25;
  spec.stream = RandomStream(5, RandomPurpose::kDropout, 2, 9);
  Tensor a = ones.clone(), b = ones.clone();
  ops::dropout_(a, spec);
  ops::dropout_(b, spec);
  int64_t zeros = 0;
  double sum = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    ASSERT_EQ(a.item(i), b.item(i));  // same stream, same mask
    zeros += a.item(i) == 0;
    sum += a.item(i);
    if (a.item(i) != 0) {
      EXPECT_NEAR(a.item(i), 1 / 0.75, 1e-6);
    }
  }
  EXPECT_NEAR(zeros / 1e5, 0.25, 0.01);
  EXPECT_NEAR(sum / 1e5, 1.0, 0.02);
}

}  // namespace
}  // namespace sw

namespace {

// The blocked mask walk draws exactly the per-element masks, from any offset.
TEST(Dropout, BlockedMaskWalkEqualsPerElementMasks) {
  sw::ops::DropoutSpec spec{0.3, sw::RandomStream(7, sw::RandomPurpose::kDropout, 2, 5)};
  for (uint64_t first : {0ull, 1ull, 2ull, 3ull, 4ull, 1001ull})
    for (int64_t count : {0, 1, 3, 4, 5, 17}) {
      int64_t visited = 0;
      spec.for_each_keep(first, count, [&](int64_t j, bool keep) {
        EXPECT_EQ(j, visited++);
        EXPECT_EQ(keep, spec.keeps(first + j)) << first << " + " << j;
      });
      EXPECT_EQ(visited, count);
    }
}

// Row dropout with the stream rows as a tensor: the vector form's masks; a wrong dtype or
// count is refused by name.
TEST(Dropout, StreamRowsAsATensor) {
  sw::ops::DropoutSpec spec{0.3, sw::RandomStream(9, sw::RandomPurpose::kDropout, 33, 4)};
  const sw::Tensor x = sw::testing::random_tensor({6, 10}, sw::DType::f32, 3);
  const std::vector<int64_t> rows = {40, 3, 3, 0, 17, 9};
  sw::Tensor by_vector = x.clone(), by_tensor = x.clone();
  sw::ops::dropout_rows_(by_vector, spec, rows);
  sw::ops::dropout_rows_(by_tensor, spec, sw::Tensor::from_vector<int64_t>(rows, {6}), 41);
  EXPECT_EQ(sw::testing::max_relative_error(by_tensor, by_vector), 0.0);
  EXPECT_NE(sw::testing::max_relative_error(by_tensor, x), 0.0);
  EXPECT_NE(sw::testing::error_of([&] {
              sw::ops::dropout_rows_(by_tensor, spec,
                                     sw::Tensor::from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {6}), 7);
            }).find("dropout: stream rows"),
            std::string::npos);
  EXPECT_NE(
      sw::testing::error_of([&] {
        sw::ops::dropout_rows_(by_tensor, spec, sw::Tensor::from_vector<int64_t>({1, 2}, {2}), 7);
      }).find("2 stream rows for"),
      std::string::npos);
}

}  // namespace
