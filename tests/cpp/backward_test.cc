// Every backward against central finite differences in f64: for L = sum(f(x) * R) with a
// random R, dL/dx from the op's backward must match (L(x + h) - L(x - h)) / 2h element by
// element, relative error <= 1e-6.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/ops/activation.h"
#include "core/ops/attention.h"
#include "core/ops/embedding.h"
#include "core/ops/gemm.h"
#include "core/ops/loss.h"
#include "core/ops/norm.h"
#include "core/ops/softmax.h"
#include "test_util.h"

namespace sw {
namespace {

using testing::gradient_error;
using testing::random_tensor;

double weighted_sum(const Tensor& y, const Tensor& r) {
  double s = 0;
  for (int64_t i = 0; i < y.numel(); ++i) s += y.item(i) * r.item(i);
  return s;
}

constexpr double kTolerance = 1e-6;

TEST(Backward, Linear) {
  Tensor x = random_tensor({3, 4, 5}, DType::f64, 1), w = random_tensor({6, 5}, DType::f64, 2);
  const Tensor r = random_tensor({3, 4, 6}, DType::f64, 3);
  auto loss = [&] { return weighted_sum(ops::linear(x, w), r); };
  EXPECT_LE(gradient_error(x, loss, ops::linear_backward_input(r, w)), kTolerance);
  Tensor dw = random_tensor({6, 5}, DType::f64, 4);  // overwritten without accumulate
  ops::linear_backward_weight(r, x, dw, false);
  EXPECT_LE(gradient_error(w, loss, dw), kTolerance);
  Tensor twice = dw.clone();
  ops::linear_backward_weight(r, x, twice, true);  // accumulates: 2 x dw
  for (int64_t i = 0; i < dw.numel(); ++i) EXPECT_NEAR(twice.item(i), 2 * dw.item(i), 1e-12);
}

TEST(Backward, RmsNorm) {
  Tensor x = random_tensor({4, 7}, DType::f64, 5, 2.0), w = random_tensor({7}, DType::f64, 6);
  const Tensor r = random_tensor({4, 7}, DType::f64, 7);
  auto loss = [&] { return weighted_sum(ops::rms_norm(x, w, 1e-6), r); };
  Tensor inv;
  ops::rms_norm(x, w, 1e-6, &inv);
  Tensor dw = Tensor::zeros({7}, DType::f64);
  const Tensor dx = ops::rms_norm_backward(r, x, w, inv, dw);
  EXPECT_LE(gradient_error(x, loss, dx), kTolerance);
  EXPECT_LE(gradient_error(w, loss, dw), kTolerance);
}

TEST(Backward, Activations) {
  Tensor x = random_tensor({5, 9}, DType::f64, 8, 2.0), lin = random_tensor({5, 9}, DType::f64, 9);
  for (int64_t i = 0; i < x.numel(); ++i)  // keep ReLU away from its kink
    if (std::fabs(x.item(i)) < 1e-3) x.data<double>()[i] = 0.5;
  const Tensor r = random_tensor({5, 9}, DType::f64, 10);
  EXPECT_LE(gradient_error(
                x, [&] { return weighted_sum(ops::relu(x), r); }, ops::relu_backward(r, x)),
            kTolerance);
  EXPECT_LE(gradient_error(
                x, [&] { return weighted_sum(ops::gelu(x), r); }, ops::gelu_backward(r, x)),
            kTolerance);
  EXPECT_LE(
      gradient_error(
          x, [&] { return weighted_sum(ops::gelu_exact(x), r); }, ops::gelu_exact_backward(r, x)),
      kTolerance);
  Tensor dgate, dlin;
  ops::gated_gelu_backward(r, x, lin, dgate, dlin);
  auto gated = [&] { return weighted_sum(ops::gated_gelu(x, lin), r); };
  EXPECT_LE(gradient_error(x, gated, dgate), kTolerance);
  EXPECT_LE(gradient_error(lin, gated, dlin), kTolerance);
}

TEST(Backward, Softmax) {
  Tensor x = random_tensor({3, 6}, DType::f64, 11, 2.0);
  const Tensor r = random_tensor({3, 6}, DType::f64, 12);
  EXPECT_LE(gradient_error(
                x, [&] { return weighted_sum(ops::softmax(x), r); },
                ops::softmax_backward(r, ops::softmax(x))),
            kTolerance);
}

TEST(Backward, EmbeddingWithRepeatedIds) {
  Tensor table = random_tensor({10, 4}, DType::f64, 13);
  const Tensor ids = Tensor::from_vector<int32_t>({3, 7, 3, 0, 9, 3}, {2, 3});
  const Tensor r = random_tensor({2, 3, 4}, DType::f64, 14);
  Tensor dtable = Tensor::zeros({10, 4}, DType::f64);
  ops::embedding_backward(r, ids, dtable);
  EXPECT_LE(gradient_error(
                table, [&] { return weighted_sum(ops::embedding(table, ids), r); }, dtable),
            kTolerance);
}

TEST(Backward, CrossEntropyWithIgnoredLabels) {
  Tensor logits = random_tensor({5, 8}, DType::f64, 15, 2.0);
  const Tensor labels = Tensor::from_vector<int32_t>({3, -100, 7, 0, -100}, {5});
  const Tensor grad = ops::cross_entropy_backward(logits, labels, 2.5);
  EXPECT_LE(gradient_error(
                logits, [&] { return 2.5 * ops::cross_entropy(logits, labels).loss; }, grad),
            kTolerance);
  for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(grad.item(1 * 8 + j), 0.0);  // ignored row
}

TEST(Backward, DistillationCrossEntropyWithIgnoredLabels) {
  Tensor logits = random_tensor({5, 8}, DType::f64, 25, 2.0);
  const Tensor labels = Tensor::from_vector<int32_t>({3, -100, 7, 0, -100}, {5});
  const Tensor q = ops::softmax(random_tensor({5, 8}, DType::f64, 26, 2.0));
  const Tensor grad = ops::distillation_cross_entropy_backward(logits, labels, q, 0.25, 2.5);
  EXPECT_LE(gradient_error(
                logits,
                [&] { return 2.5 * ops::distillation_cross_entropy(logits, labels, q, 0.25).loss; },
                grad),
            kTolerance);
  for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(grad.item(1 * 8 + j), 0.0);  // ignored row
}

TEST(Backward, AttentionWithBiasMaskCausalAndDropout) {
  const int64_t B = 2, T = 4, S = 5, H = 2, dk = 3;
  Tensor q = random_tensor({B, T, H * dk}, DType::f64, 16),
         k = random_tensor({B, S, H * dk}, DType::f64, 17);
  Tensor v = random_tensor({B, S, H * dk}, DType::f64, 18),
         bias = random_tensor({H, T, S}, DType::f64, 19);
  const Tensor mask = Tensor::from_vector<int32_t>({1, 1, 0, 1, 1, 1, 1, 1, 1, 0}, {B, S});
  const Tensor r = random_tensor({B, T, H * dk}, DType::f64, 20);
  for (bool causal : {false, true})
    for (double rate : {0.0, 0.3}) {
      SCOPED_TRACE(::testing::Message() << "causal " << causal << " dropout " << rate);
      ops::AttentionInputs in;
      in.bias = &bias;
      in.key_mask = &mask;
      in.causal = causal;
      in.dropout.rate = rate;
      in.dropout.stream = RandomStream(4, RandomPurpose::kDropout, 1, 2);
      auto loss = [&] { return weighted_sum(ops::attention(q, k, v, H, in), r); };
      Tensor probs;
      ops::attention(q, k, v, H, in, &probs);
      const ops::AttentionGrads g = ops::attention_backward(r, q, k, v, probs, H, in);
      EXPECT_LE(gradient_error(q, loss, g.dq), kTolerance);
      EXPECT_LE(gradient_error(k, loss, g.dk), kTolerance);
      EXPECT_LE(gradient_error(v, loss, g.dv), kTolerance);
      EXPECT_LE(gradient_error(bias, loss, g.dbias), kTolerance);
    }
}

}  // namespace
}  // namespace sw
