// Optimizers and schedules against properties that follow from their definitions
// (Shazeer & Stern 2018; Loshchilov & Hutter 2019) and hand-computed values.
#include "core/train/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/train/adafactor.h"
#include "core/train/adamw.h"
#include "core/train/gradient_clipping.h"
#include "core/train/schedule.h"
#include "test_util.h"

namespace sw {
namespace {

using testing::random_tensor;

std::vector<ParameterGradient> one(const std::string& name, const Tensor& p, const Tensor& g) {
  return {{name, p, g}};
}

// With a rank-1 squared gradient g = a b^T, Adafactor's factored estimate is exact at the
// first step: v_hat = g^2 (+eps1), so every element moves by exactly lr * sign(g).
TEST(Adafactor, FactoredEstimateIsExactForRankOneGradients) {
  const Tensor a = random_tensor({5}, DType::f64, 1), b = random_tensor({7}, DType::f64, 2);
  Tensor g = Tensor::empty({5, 7}, DType::f64);
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t c = 0; c < 7; ++c) g.data<double>()[r * 7 + c] = a.item(r) * b.item(c);
  const Tensor p0 = random_tensor({5, 7}, DType::f64, 3);
  Tensor p = p0.clone();
  auto opt = make_adafactor({});
  auto grads = one("w", p, g);
  opt->step(grads, 0.01, 1);
  for (int64_t i = 0; i < 35; ++i)
    EXPECT_NEAR(p.item(i), p0.item(i) - 0.01 * (g.item(i) > 0 ? 1 : -1), 1e-12) << i;
  const auto state = opt->state();
  ASSERT_EQ(state.size(), 2u);  // row and column statistics only: no first moment
  EXPECT_EQ(state[0].first, "w/row");
  EXPECT_EQ(state[0].second.shape(), Shape({5}));
  EXPECT_EQ(state[1].second.shape(), Shape({7}));
}

TEST(Adafactor, UpdateClippingAndParameterScale) {
  const Tensor g = random_tensor({6}, DType::f64, 4);
  const Tensor p0 = random_tensor({6}, DType::f64, 5, 0.5);
  // Vectors are not factored: at step 1 the update is g / |g| (RMS 1), clipped to 0.5.
  AdafactorOptions o;
  o.clip_threshold = 0.5;
  Tensor p = p0.clone();
  auto grads = one("v", p, g);
  make_adafactor(o)->step(grads, 0.1, 1);
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_NEAR(p.item(i), p0.item(i) - 0.1 * 0.5 * (g.item(i) > 0 ? 1 : -1), 1e-12);
  // Relative step: the rate is multiplied by RMS(parameter).
  o.clip_threshold = 1.0;
  o.multiply_by_parameter_scale = true;
  double rms = 0;
  for (int64_t i = 0; i < 6; ++i) rms += p0.item(i) * p0.item(i) / 6;
  rms = std::sqrt(rms);
  p = p0.clone();
  grads = one("v", p, g);
  make_adafactor(o)->step(grads, 0.1, 1);
  for (int64_t i = 0; i < 6; ++i)
    EXPECT_NEAR(p.item(i), p0.item(i) - 0.1 * rms * (g.item(i) > 0 ? 1 : -1), 1e-12);
}

// Adafactor written out plainly (Shazeer & Stern 2018, Algorithms 4 and 5, with the
// options above), one step on a stack of matrices [batch, rows, cols] or a vector (batch
// 1, rows 1): the full v_hat per element, no factoring tricks, all in double.
struct ReferenceAdafactor {
  AdafactorOptions o;
  int64_t batch, rows, cols;
  bool factored;
  std::vector<double> row, col, v, m;
  ReferenceAdafactor(const AdafactorOptions& options, int64_t b, int64_t r, int64_t c, bool f)
      : o(options),
        batch(b),
        rows(r),
        cols(c),
        factored(f),
        row(b * r),
        col(b * c),
        v(b * r * c),
        m(b * r * c) {}
  void step(std::vector<double>& p, const std::vector<double>& g, double lr, int64_t t) {
    const double beta2 = 1 - std::pow(static_cast<double>(t), -o.decay_rate);
    const int64_t n = static_cast<int64_t>(p.size());
    double rate = lr;
    if (o.multiply_by_parameter_scale) {
      double ms = 0;
      for (double x : p) ms += x * x / static_cast<double>(n);
      rate *= std::max(o.eps2, std::sqrt(ms));
    }
    std::vector<double> v_hat(n);
    for (int64_t b = 0; b < batch; ++b) {
      auto at = [&](int64_t r, int64_t c) { return (b * rows + r) * cols + c; };
      if (!factored) {
        for (int64_t i = 0; i < n; ++i)
          v_hat[i] = v[i] = beta2 * v[i] + (1 - beta2) * (g[i] * g[i] + o.eps1);
        continue;
      }
      for (int64_t r = 0; r < rows; ++r) {
        double mean = 0;
        for (int64_t c = 0; c < cols; ++c) mean += (g[at(r, c)] * g[at(r, c)] + o.eps1) / cols;
        row[b * rows + r] = beta2 * row[b * rows + r] + (1 - beta2) * mean;
      }
      for (int64_t c = 0; c < cols; ++c) {
        double mean = 0;
        for (int64_t r = 0; r < rows; ++r) mean += (g[at(r, c)] * g[at(r, c)] + o.eps1) / rows;
        col[b * cols + c] = beta2 * col[b * cols + c] + (1 - beta2) * mean;
      }
      double row_mean = 0;
      for (int64_t r = 0; r < rows; ++r) row_mean += row[b * rows + r] / rows;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c)
          v_hat[at(r, c)] = row[b * rows + r] * col[b * cols + c] / row_mean;
    }
    std::vector<double> u(n);
    double u_ms = 0;
    for (int64_t i = 0; i < n; ++i) {
      u[i] = g[i] / std::sqrt(v_hat[i]);
      u_ms += u[i] * u[i] / static_cast<double>(n);
    }
    const double shrink = std::max(1.0, std::sqrt(u_ms) / o.clip_threshold);
    for (int64_t i = 0; i < n; ++i) {
      double step = u[i] / shrink;
      if (o.beta1 > 0) step = m[i] = o.beta1 * m[i] + (1 - o.beta1) * step;
      p[i] = p[i] - rate * o.weight_decay * p[i] - rate * step;
    }
  }
};

// Every option on, on a stack of matrices whose rows cross the optimizer's 16K-element
// blocks mid-row and on a vector longer than a block, in f64 (1e-12) and f32 (the
// training dtype: 2e-6 of the parameter's scale), over three steps with fresh gradients.
TEST(Adafactor, MatchesAPlainReferenceOnStacksAndVectors) {
  AdafactorOptions o;
  o.beta1 = 0.9;
  o.clip_threshold = 0.8;
  o.multiply_by_parameter_scale = true;
  o.weight_decay = 0.1;
  struct Case {
    Shape shape;
    int64_t batch, rows, cols;
    bool factored;
  };
  for (const Case& k : {Case{{3, 37, 500}, 3, 37, 500, true}, Case{{20000}, 1, 1, 20000, false}})
    for (DType dt : {DType::f64, DType::f32}) {
      Tensor p = random_tensor(k.shape, DType::f64, 11).to(dt);
      std::vector<double> want(p.numel());
      for (int64_t i = 0; i < p.numel(); ++i) want[i] = p.item(i);
      ReferenceAdafactor reference(o, k.batch, k.rows, k.cols, k.factored);
      auto opt = make_adafactor(o);
      for (int64_t t = 1; t <= 3; ++t) {
        const Tensor g = random_tensor(k.shape, DType::f64, 100 + t).to(dt);
        std::vector<double> gv(g.numel());
        for (int64_t i = 0; i < g.numel(); ++i) gv[i] = g.item(i);
        auto grads = one("w", p, g);
        opt->step(grads, 0.05, t);
        reference.step(want, gv, 0.05, t);
      }
      const double tol = dt == DType::f64 ? 1e-12 : 2e-6;
      double worst = 0;
      for (int64_t i = 0; i < p.numel(); ++i)
        worst = std::max(worst, std::abs(p.item(i) - want[i]));
      EXPECT_LT(worst, tol) << shape_str(k.shape) << " " << dtype_name(dt);
    }
}

TEST(Adafactor, SecondMomentDecaysAsOneMinusStepToTheMinusDecayRate) {
  // Unfactored scalar: v1 = g1^2; v2 = b g1^2 + (1 - b) g2^2 with b = 1 - 2^-0.8.
  Tensor p = Tensor::from_vector<double>({0.0}, {1});
  auto opt = make_adafactor({});
  auto grads = one("s", p, Tensor::from_vector<double>({2.0}, {1}));
  opt->step(grads, 1.0, 1);
  grads = one("s", p, Tensor::from_vector<double>({-1.0}, {1}));
  opt->step(grads, 1.0, 2);
  const double b = 1 - std::pow(2.0, -0.8);
  EXPECT_NEAR(opt->state()[0].second.item(0), b * 4.0 + (1 - b) * 1.0, 1e-12);
  // The update -1 / sqrt(v2) has RMS 1 / sqrt(v2), under the clip threshold 1 since v2 > 1.
  const double v2 = b * 4.0 + (1 - b) * 1.0;
  ASSERT_GT(v2, 1.0);
  EXPECT_NEAR(p.item(0), -1.0 + 1.0 / std::sqrt(v2), 1e-12);
}

TEST(Adafactor, MinimisesAQuadratic) {
  const Tensor target = random_tensor({8, 12}, DType::f32, 6);
  Tensor w = Tensor::zeros({8, 12}, DType::f32);
  auto opt = make_adafactor({});
  auto loss = [&] {
    double s = 0;
    for (int64_t i = 0; i < w.numel(); ++i) s += std::pow(w.item(i) - target.item(i), 2);
    return s;
  };
  const double start = loss();
  for (int64_t step = 1; step <= 300; ++step) {
    Tensor g = Tensor::empty({8, 12}, DType::f32);
    for (int64_t i = 0; i < w.numel(); ++i)
      g.data<float>()[i] = static_cast<float>(2 * (w.item(i) - target.item(i)));
    auto grads = one("w", w, g);
    opt->step(grads, 0.05 / std::sqrt(static_cast<double>(step)), step);
  }
  EXPECT_LT(loss(), 0.05 * start);
}

TEST(AdamW, FirstTwoStepsByHand) {
  Tensor p = Tensor::from_vector<double>({1.0, -2.0}, {2});
  AdamWOptions o;
  o.weight_decay = 0.1;
  auto opt = make_adamw(o);
  auto grads = one("p", p, Tensor::from_vector<double>({0.5, -4.0}, {2}));
  opt->step(grads, 0.01, 1);
  // Step 1: m_hat = g, v_hat = g^2: the step is sign(g) (up to eps), plus decay.
  EXPECT_NEAR(p.item(0), 1.0 - 0.01 * (0.5 / (0.5 + 1e-8) + 0.1 * 1.0), 1e-12);
  EXPECT_NEAR(p.item(1), -2.0 - 0.01 * (-4.0 / (4.0 + 1e-8) + 0.1 * -2.0), 1e-12);
  const double p1 = p.item(0);
  grads = one("p", p, Tensor::from_vector<double>({1.5, 0.0}, {2}));
  opt->step(grads, 0.01, 2);
  const double m = 0.9 * 0.1 * 0.5 + 0.1 * 1.5, v = 0.999 * 0.001 * 0.25 + 0.001 * 2.25;
  const double m_hat = m / (1 - 0.81), v_hat = v / (1 - 0.999 * 0.999);
  EXPECT_NEAR(p.item(0), p1 - 0.01 * (m_hat / (std::sqrt(v_hat) + 1e-8) + 0.1 * p1), 1e-12);
}

TEST(Optimizer, MismatchedParametersAreErrors) {
  Tensor p = Tensor::zeros({3, 4}, DType::f32);
  auto opt = make_adafactor({});
  auto bad = one("w", p, Tensor::zeros({4, 3}, DType::f32));
  EXPECT_THROW(opt->step(bad, 0.1, 1), Error);
  auto good = one("w", p, Tensor::zeros({3, 4}, DType::f32));
  opt->step(good, 0.1, 1);
  auto renamed = one("u", p, Tensor::zeros({3, 4}, DType::f32));
  EXPECT_THROW(opt->step(renamed, 0.1, 2), Error);
  EXPECT_THROW(opt->step(good, 0.1, 0), Error);
  EXPECT_THROW(make_adamw({0.9, 1.5, 1e-8, 0.0}), Error);
  AdafactorOptions negative;
  negative.clip_threshold = 0;
  EXPECT_THROW(make_adafactor(negative), Error);
}

// State saved from one optimizer continues in another exactly; bad state is refused whole.
TEST(Optimizer, LoadStateContinuesExactlyAndRefusesBadState) {
  for (bool adamw : {false, true}) {
    auto make = [&] { return adamw ? make_adamw({}) : make_adafactor({}); };
    const Tensor g = random_tensor({4, 3}, DType::f32, 5), b = random_tensor({3}, DType::f32, 6);
    Tensor w1 = random_tensor({4, 3}, DType::f32, 7), v1 = random_tensor({3}, DType::f32, 8);
    Tensor w2 = w1.clone(), v2 = v1.clone();
    auto first = make();
    std::vector<ParameterGradient> grads = {{"w", w1, g}, {"v", v1, b}};
    first->step(grads, 0.1, 1);
    w2.copy_from(w1);
    v2.copy_from(v1);
    auto second = make();
    second->load_state({{"w", w2}, {"v", v2}}, first->state());
    first->step(grads, 0.1, 2);
    std::vector<ParameterGradient> grads2 = {{"w", w2, g}, {"v", v2, b}};
    second->step(grads2, 0.1, 2);
    for (int64_t i = 0; i < w1.numel(); ++i) EXPECT_EQ(w1.item(i), w2.item(i));
    for (int64_t i = 0; i < v1.numel(); ++i) EXPECT_EQ(v1.item(i), v2.item(i));

    auto third = make();
    auto missing = first->state();
    const std::string dropped = missing.back().first;
    missing.pop_back();
    try {
      third->load_state({{"w", w2}, {"v", v2}}, missing);
      FAIL() << "missing state loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(dropped), std::string::npos) << e.what();
    }
    auto extra = first->state();
    extra.push_back({"u/v", Tensor::zeros({2}, DType::f32)});
    EXPECT_THROW(third->load_state({{"w", w2}, {"v", v2}}, extra), Error);
    EXPECT_TRUE(third->state().empty());  // nothing loaded
  }
}

TEST(Optimizer, GlobalGradientNormClipping) {
  Tensor p1 = Tensor::zeros({2}, DType::f32), p2 = Tensor::zeros({1}, DType::f32);
  std::vector<ParameterGradient> grads = {{"a", p1, Tensor::from_vector<float>({3, 0}, {2})},
                                          {"b", p2, Tensor::from_vector<float>({4}, {1})}};
  EXPECT_NEAR(clip_gradient_norm(grads, 10.0), 5.0, 1e-6);  // below: unchanged
  EXPECT_FLOAT_EQ(static_cast<float>(grads[0].gradient.item(0)), 3.0f);
  EXPECT_NEAR(clip_gradient_norm(grads, 1.0), 5.0, 1e-6);
  EXPECT_NEAR(grads[0].gradient.item(0), 0.6, 1e-6);
  EXPECT_NEAR(grads[1].gradient.item(0), 0.8, 1e-6);
}

TEST(Schedule, InverseSqrtConstantAndCosine) {
  LearningRateSchedule t5;  // 1 / sqrt(max(step, 10000))
  EXPECT_DOUBLE_EQ(t5.rate(1), 0.01);
  EXPECT_DOUBLE_EQ(t5.rate(10000), 0.01);
  EXPECT_DOUBLE_EQ(t5.rate(40000), 0.005);
  LearningRateSchedule constant;
  constant.kind = LearningRateSchedule::Kind::kConstant;
  constant.base = 1e-3;
  EXPECT_DOUBLE_EQ(constant.rate(123456), 1e-3);
  LearningRateSchedule cosine;
  cosine.kind = LearningRateSchedule::Kind::kWarmupCosine;
  cosine.base = 1e-3;
  cosine.warmup_steps = 100;
  cosine.total_steps = 1100;
  cosine.min_rate = 1e-5;
  EXPECT_DOUBLE_EQ(cosine.rate(50), 5e-4);
  EXPECT_DOUBLE_EQ(cosine.rate(100), 1e-3);
  EXPECT_NEAR(cosine.rate(600), (1e-3 + 1e-5) / 2, 1e-15);
  EXPECT_NEAR(cosine.rate(1100), 1e-5, 1e-15);
  EXPECT_NEAR(cosine.rate(5000), 1e-5, 1e-15);
  cosine.total_steps = 50;
  EXPECT_THROW(cosine.rate(1), Error);
  EXPECT_THROW(t5.rate(0), Error);
}

}  // namespace
}  // namespace sw
