// Every CUDA op against the CPU path on fresh random inputs: f32 within 1e-5 relative
// (TF32 off), bf16 within 2e-2, NaN never passes, routing decisions exactly. Compiled in
// every build; each test skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "core/dist/model_parallel.h"
#include "core/model/switch_ffn.h"
#include "core/ops/activation.h"
#include "core/ops/attention.h"
#include "core/ops/capacity.h"
#include "core/ops/dispatch.h"
#include "core/ops/dropout.h"
#include "core/ops/elementwise.h"
#include "core/ops/embedding.h"
#include "core/ops/gemm.h"
#include "core/ops/loss.h"
#include "core/ops/norm.h"
#include "core/ops/position_bias.h"
#include "core/ops/router.h"
#include "core/ops/router_loss.h"
#include "core/ops/softmax.h"
#include "parity_util.h"

namespace sw {
namespace {

using testing::max_relative_error;
using testing::random_tensor;

using parity::gpu;
using parity::host;
using parity::kGpu;
using Parity = parity::GpuTest;
// A GPU output buffer full of NaN: any element the op fails to write fails the check.
Tensor poisoned(const Shape& shape, DType dtype) {
  return Tensor::full(shape, DType::f32, std::numeric_limits<double>::quiet_NaN())
      .to(dtype)
      .to(kGpu);
}

struct Precision {
  DType dtype;
  double tolerance;
};
const Precision kF32{DType::f32, 1e-5}, kBf16{DType::bf16, 2e-2};

TEST_F(Parity, MatmulAllTransposes) {
  for (const Precision& p : {kF32, kBf16})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        const Tensor a = random_tensor(ta ? Shape{96, 70} : Shape{70, 96}, DType::f32, 1);
        const Tensor b = random_tensor(tb ? Shape{50, 96} : Shape{96, 50}, DType::f32, 2);
        Tensor c = poisoned({70, 50}, p.dtype);
        ops::matmul(gpu(a, p.dtype), ta, gpu(b, p.dtype), tb, c);
        EXPECT_LE(max_relative_error(host(c), ops::matmul(a, ta, b, tb)), p.tolerance)
            << dtype_name(p.dtype) << " ta " << ta << " tb " << tb;
      }
}

TEST_F(Parity, BatchedAndGroupedMatmul) {
  for (const Precision& p : {kF32, kBf16}) {
    const Tensor a = random_tensor({3, 40, 64}, DType::f32, 3),
                 b = random_tensor({3, 48, 64}, DType::f32, 4);
    Tensor c = poisoned({3, 40, 48}, p.dtype);
    ops::batched_matmul(gpu(a, p.dtype), false, gpu(b, p.dtype), true, c);
    Tensor expected = Tensor::empty({3, 40, 48}, DType::f32);
    ops::batched_matmul(a, false, b, true, expected);
    EXPECT_LE(max_relative_error(host(c), expected), p.tolerance) << dtype_name(p.dtype);

    const std::vector<int64_t> offsets = {0, 33, 33, 80, 81};  // an empty and a 1-row group
    const Tensor x = random_tensor({81, 64}, DType::f32, 5),
                 w = random_tensor({4, 48, 64}, DType::f32, 6);
    Tensor y = poisoned({81, 48}, p.dtype);
    ops::grouped_matmul(gpu(x, p.dtype), gpu(w, p.dtype), true, y, offsets);
    Tensor y_cpu = Tensor::empty({81, 48}, DType::f32);
    ops::grouped_matmul(x, w, true, y_cpu, offsets);
    EXPECT_LE(max_relative_error(host(y), y_cpu), p.tolerance) << dtype_name(p.dtype);
  }
}

// The expert GEMM with its ReLU as an epilogue (cuBLASLt in bf16; the GEMM then an
// in-place ReLU in f32): the CPU's GEMM then ReLU, nothing negative left, at the layer's
// padded [E, rows, d] shapes and an odd one.
TEST_F(Parity, BatchedMatmulWithReluEpilogue) {
  for (const Precision& p : {kF32, kBf16})
    for (const Shape& dims : {Shape{3, 40, 48, 64}, Shape{8, 128, 512, 256}}) {
      const int64_t e = dims[0], m = dims[1], n = dims[2], k = dims[3];
      const Tensor a = random_tensor({e, m, k}, DType::f32, 31),
                   b = random_tensor({e, n, k}, DType::f32, 32);
      Tensor c = poisoned({e, m, n}, p.dtype);
      ops::batched_matmul(gpu(a, p.dtype), false, gpu(b, p.dtype), true, c, ops::Epilogue::kRelu);
      Tensor expected = Tensor::empty({e, m, n}, DType::f32);
      ops::batched_matmul(a, false, b, true, expected, ops::Epilogue::kRelu);
      const Tensor got = host(c);
      EXPECT_LE(max_relative_error(got, expected), p.tolerance) << dtype_name(p.dtype) << " " << m;
      int64_t negative = 0, zeros = 0;
      for (int64_t i = 0; i < got.numel(); ++i) {
        negative += got.data<float>()[i] < 0;
        zeros += got.data<float>()[i] == 0;
      }
      EXPECT_EQ(negative, 0) << dtype_name(p.dtype);
      EXPECT_GT(zeros, got.numel() / 4) << "about half the products are negative";
    }
}

// The expert GEMM with its activation as an epilogue, keeping what the backward needs,
// and the backward GEMM applying the activation's slope (in bf16 one cuBLASLt call each:
// RELU_AUX / GELU_AUX, then DRELU / DGELU; in f32 the GEMM and the activation apart),
// against the cpu's GEMM and activation on the same bf16-rounded inputs. The backward's
// reference takes the GPU's own pre-activation, so a sign the rounding flipped at ReLU's
// kink is not counted as an error. In bf16 both calls must report the fused path (and a
// ReLU's sign bits must come from cuBLASLt): a silent fallback fails the test.
TEST_F(Parity, BatchedMatmulActivationAndItsBackward) {
  for (const Precision& p : {kF32, kBf16})
    for (ops::Epilogue act : {ops::Epilogue::kRelu, ops::Epilogue::kGelu})
      for (const Shape& dims : {Shape{3, 40, 48, 64}, Shape{8, 128, 512, 256}}) {
        SCOPED_TRACE(::testing::Message()
                     << dtype_name(p.dtype) << " "
                     << (act == ops::Epilogue::kRelu ? "relu" : "gelu") << " m " << dims[1]);
        const int64_t e = dims[0], m = dims[1], n = dims[2], k = dims[3];
        auto input = [&](const Shape& shape, uint32_t seed) {
          return host(gpu(random_tensor(shape, DType::f32, seed), p.dtype)).to(DType::f32);
        };
        const Tensor a = input({e, m, k}, 51), b = input({e, n, k}, 52), dy = input({e, m, k}, 53),
                     w = input({e, k, n}, 54);
        Tensor c = poisoned({e, m, n}, p.dtype), d_pre = poisoned({e, m, n}, p.dtype);
        ops::ActivationSaved saved;
        const bool fused = ops::batched_matmul_activation(gpu(a, p.dtype), false, gpu(b, p.dtype),
                                                          true, c, act, saved);
        EXPECT_EQ(fused, p.dtype == DType::bf16) << "one cuBLASLt call in bf16 only";
        Tensor expected = Tensor::empty({e, m, n}, DType::f32);
        ops::ActivationSaved reference;
        ops::batched_matmul_activation(a, false, b, true, expected, act, reference);
        EXPECT_LE(max_relative_error(host(c), expected), p.tolerance);
        if (p.dtype == DType::bf16 && act == ops::Epilogue::kRelu) {
          EXPECT_TRUE(saved.relu_mask.defined()) << "cuBLASLt ran no RELU_AUX epilogue";
        }
        if (act == ops::Epilogue::kGelu) {
          EXPECT_LE(max_relative_error(host(saved.pre_activation), reference.pre_activation),
                    p.tolerance);
        }
        EXPECT_EQ(ops::batched_matmul_activation_backward(gpu(dy, p.dtype), false, gpu(w, p.dtype),
                                                          false, d_pre, saved),
                  p.dtype == DType::bf16)
            << "the backward's DRELU / DGELU epilogue in bf16 only";
        reference.pre_activation = host(saved.pre_activation).to(DType::f32);
        Tensor expected_grad = Tensor::empty({e, m, n}, DType::f32);
        ops::batched_matmul_activation_backward(dy, false, w, false, expected_grad, reference);
        EXPECT_LE(max_relative_error(host(d_pre), expected_grad), p.tolerance);
      }
}

// bf16 training's f32 gradients of bf16 data (docs/MATH.md §5 Precision): the weight
// gradient GEMMs (bf16 in, f32 accumulated into f32), RMSNorm's weight gradient and the
// embedding gradient, against the CPU in f32 on the same bf16-rounded values.
TEST_F(Parity, Bf16DataWithF32Gradients) {
  auto rounded = [](const Tensor& t) { return host(gpu(t, DType::bf16)); };
  const Tensor dy = rounded(random_tensor({70, 50}, DType::f32, 41)),
               x = rounded(random_tensor({70, 96}, DType::f32, 42));
  Tensor dw_cpu = random_tensor({50, 96}, DType::f32, 43);
  Tensor dw = gpu(dw_cpu);
  ops::linear_backward_weight(gpu(dy, DType::bf16), gpu(x, DType::bf16), dw, true);
  ops::linear_backward_weight(dy, x, dw_cpu, true);
  EXPECT_EQ(dw.dtype(), DType::f32);
  EXPECT_LE(max_relative_error(host(dw), dw_cpu), 1e-5);

  const std::vector<int64_t> offsets = {0, 33, 33, 70};
  Tensor gw_cpu = random_tensor({3, 50, 96}, DType::f32, 44);
  Tensor gw = gpu(gw_cpu);
  ops::grouped_weight_gradient(gpu(dy, DType::bf16), gpu(x, DType::bf16), offsets, gw);
  ops::grouped_weight_gradient(dy, x, offsets, gw_cpu);
  EXPECT_LE(max_relative_error(host(gw), gw_cpu), 1e-5);

  const Tensor nx = rounded(random_tensor({320, 77}, DType::f32, 45)),
               nw = rounded(random_tensor({77}, DType::f32, 46)),
               ndy = rounded(random_tensor({320, 77}, DType::f32, 47));
  Tensor inv_cpu, inv_gpu;
  ops::rms_norm(nx, nw, 1e-6, &inv_cpu);
  ops::rms_norm(gpu(nx, DType::bf16), gpu(nw, DType::bf16), 1e-6, &inv_gpu);
  Tensor ndw_cpu = random_tensor({77}, DType::f32, 48);
  Tensor ndw = gpu(ndw_cpu);
  ops::rms_norm_backward(gpu(ndy, DType::bf16), gpu(nx, DType::bf16), gpu(nw, DType::bf16), inv_gpu,
                         ndw);
  ops::rms_norm_backward(ndy, nx, nw, inv_cpu, ndw_cpu);
  EXPECT_LE(max_relative_error(host(ndw), ndw_cpu), 1e-4);

  std::vector<int32_t> ids(300);
  for (int i = 0; i < 300; ++i) ids[i] = (i * i * 7) % 53;
  const Tensor id = Tensor::from_vector<int32_t>(ids, {3, 100});
  const Tensor edy = rounded(random_tensor({3, 100, 70}, DType::f32, 49));
  Tensor table_cpu = random_tensor({60, 70}, DType::f32, 50);
  Tensor table = gpu(table_cpu);
  ops::embedding_backward(gpu(edy, DType::bf16), id.to(kGpu), table);
  ops::embedding_backward(edy, id, table_cpu);
  EXPECT_LE(max_relative_error(host(table), table_cpu), 1e-6);
}

// In bf16 the expert GEMM layout comes from a measured table: a shape class is timed once
// with the layer's weight (each layout that applies, finite and positive), the fastest
// chosen, and a shape within the same powers of two reuses it; padding that is not
// allowed is not measured. In f32 (the parity mode) the choice is fixed and nothing is
// measured.
TEST_F(Parity, ExpertLayoutIsMeasuredOncePerShapeClass) {
  auto entries = [] {
    std::vector<ops::ExpertLayoutMeasurement> found;
    for (const auto& m : ops::expert_layout_table())
      if (m.experts == 4 && m.in_features == 64 && m.out_features == 96) found.push_back(m);
    return found;
  };
  const Tensor w = gpu(random_tensor({4, 96, 64}, DType::f32, 33), DType::bf16);
  const size_t before = entries().size();
  const ops::ExpertLayout first = ops::choose_expert_layout(w, true, {100, 90, 0, 120}, true);
  EXPECT_EQ(ops::choose_expert_layout(w, true, {110, 80, 5, 127}, true), first);
  std::vector<ops::ExpertLayoutMeasurement> found = entries();
  ASSERT_EQ(found.size(), before + 1);
  const ops::ExpertLayoutMeasurement& m = found.back();
  EXPECT_EQ(m.rows_bucket, 128);
  EXPECT_EQ(m.kept_bucket, 512);
  EXPECT_TRUE(m.transposed && m.padded_allowed);
  for (double ms : {m.padded_ms, m.grouped_api_ms, m.per_expert_ms})
    EXPECT_TRUE(std::isfinite(ms) && ms > 0) << ms;
  // The strictly fastest; a tie goes to the later of padded, grouped API, per expert.
  EXPECT_EQ(m.chosen, m.padded_ms < std::min(m.grouped_api_ms, m.per_expert_ms)
                          ? ops::ExpertLayout::kPadded
                      : m.grouped_api_ms < m.per_expert_ms ? ops::ExpertLayout::kGroupedApi
                                                           : ops::ExpertLayout::kPerExpert);
  EXPECT_EQ(m.chosen, first);
  // Padding not allowed: a class of its own, in which padding is never timed or chosen.
  EXPECT_NE(ops::choose_expert_layout(w, true, {100, 90, 0, 120}, false),
            ops::ExpertLayout::kPadded);
  found = entries();
  ASSERT_EQ(found.size(), before + 2);
  EXPECT_TRUE(std::isinf(found.back().padded_ms) || std::isinf(found.front().padded_ms));
  // f32: fixed, nothing measured.
  const Tensor w32 = gpu(random_tensor({4, 96, 64}, DType::f32, 33));
  EXPECT_EQ(ops::choose_expert_layout(w32, true, {100, 90, 0, 120}, true),
            ops::ExpertLayout::kPadded);
  EXPECT_EQ(ops::choose_expert_layout(w32, true, {100, 90, 0, 120}, false),
            ops::ExpertLayout::kPerExpert);
  EXPECT_EQ(entries().size(), before + 2);
}

// The Switch layer's loss terms and statistics from GPU tensors, summed on the device
// (kernels/router_loss.cu), against the same tensors on the cpu: the load-balancing sums
// over groups (accumulated over two adds), the z-loss and the routing statistics.
TEST_F(Parity, RoutingLossesAndStatisticsSumOnTheDevice) {
  const int64_t n = 1536, experts = 16, groups = 3, group_size = n / groups;
  ops::RouterOutput r;
  r.logits = random_tensor({n, experts}, DType::f32, 60, 2.0);
  r.probs = ops::softmax(r.logits);
  std::vector<int32_t> best(n);
  std::vector<float> gate(n);
  for (int64_t t = 0; t < n; ++t) {
    const float* p = r.probs.data<float>() + t * experts;
    best[t] = static_cast<int32_t>(std::max_element(p, p + experts) - p);
    gate[t] = p[best[t]];
  }
  r.expert_index = Tensor::from_vector<int32_t>(best, {n, 1});
  r.gate = Tensor::from_vector<float>(gate, {n, 1});
  ops::RouterOutput d{gpu(r.logits), gpu(r.probs), r.expert_index.to(kGpu), gpu(r.gate)};
  ops::BalanceSums on_cpu(groups, experts), on_gpu(groups, experts);
  // The second add gives the experts from the host, as the HF aux modes do.
  for (const Tensor* assigned : {&d.expert_index, &r.expert_index}) {
    on_cpu.add(r.probs, r.expert_index);
    on_gpu.add(d.probs, *assigned);
  }
  EXPECT_NEAR(on_gpu.loss(), on_cpu.loss(), 1e-12 * on_cpu.loss());
  // One group of 1536 tokens: summed on the device in three chunks.
  ops::BalanceSums whole_cpu(1, experts), whole_gpu(1, experts);
  whole_cpu.add(r.probs, r.expert_index);
  whole_gpu.add(d.probs, d.expert_index);
  EXPECT_NEAR(whole_gpu.loss(), whole_cpu.loss(), 1e-12 * whole_cpu.loss());
  const double z = ops::router_z_loss(r.logits);
  EXPECT_NEAR(ops::router_z_loss(d.logits), z, 1e-6 * z);
  const int64_t capacity = group_size / experts;  // tight: some tokens are dropped
  const ops::RoutingStats c =
      ops::routing_stats(r, ops::assign_capacity(r.expert_index, experts, group_size, capacity));
  const ops::RoutingStats g =
      ops::routing_stats(d, ops::assign_capacity(d.expert_index, experts, group_size, capacity));
  EXPECT_EQ(g.tokens_per_expert, c.tokens_per_expert);
  EXPECT_EQ(g.kept_per_expert, c.kept_per_expert);
  EXPECT_GT(c.dropped_fraction, 0.0);
  EXPECT_EQ(g.dropped_fraction, c.dropped_fraction);
  EXPECT_NEAR(g.router_entropy, c.router_entropy, 1e-9 * c.router_entropy);
}

// Groups of equal size (the padded layout's, as its backward sees them) run as one
// strided-batched GEMM: the product both ways round and the accumulated weight gradient
// (f32, and f32 from bf16 data) as the CPU computes them group by group.
TEST_F(Parity, EqualGroupsRunAsOneBatchedGemm) {
  const std::vector<int64_t> offsets = {0, 40, 80, 120};
  auto rounded = [](const Tensor& t) { return host(gpu(t, DType::bf16)); };
  for (const Precision& p : {kF32, kBf16}) {
    SCOPED_TRACE(dtype_name(p.dtype));
    const Tensor x = rounded(random_tensor({120, 64}, DType::f32, 51));
    for (bool tb : {true, false}) {
      const Tensor w =
          rounded(random_tensor(tb ? Shape{3, 48, 64} : Shape{3, 64, 48}, DType::f32, 52));
      Tensor c = poisoned({120, 48}, p.dtype);
      ops::grouped_matmul(gpu(x, p.dtype), gpu(w, p.dtype), tb, c, offsets);
      Tensor expected = Tensor::empty({120, 48}, DType::f32);
      ops::grouped_matmul(x, w, tb, expected, offsets);
      EXPECT_LE(max_relative_error(host(c), expected), p.tolerance) << "tb " << tb;
    }
    const Tensor dy = rounded(random_tensor({120, 48}, DType::f32, 53));
    Tensor dw_cpu = random_tensor({3, 48, 64}, DType::f32, 54);
    Tensor dw = gpu(dw_cpu);  // f32: bf16 training's gradients of bf16 data are f32
    ops::grouped_weight_gradient(gpu(dy, p.dtype), gpu(x, p.dtype), offsets, dw);
    ops::grouped_weight_gradient(dy, x, offsets, dw_cpu);
    EXPECT_LE(max_relative_error(host(dw), dw_cpu), 1e-5);
  }
}

TEST_F(Parity, GroupedWeightGradient) {
  const std::vector<int64_t> offsets = {0, 33, 33, 80, 81};
  const Tensor dy = random_tensor({81, 48}, DType::f32, 7),
               x = random_tensor({81, 64}, DType::f32, 8);
  Tensor dw_cpu = random_tensor({4, 48, 64}, DType::f32, 9);
  Tensor dw = gpu(dw_cpu, DType::f32);
  ops::grouped_weight_gradient(gpu(dy, DType::f32), gpu(x, DType::f32), offsets, dw);
  ops::grouped_weight_gradient(dy, x, offsets, dw_cpu);
  EXPECT_LE(max_relative_error(host(dw), dw_cpu), 1e-5);
}

// A backward op without a CUDA kernel yet fails through its device switch, naming the op
// and the device, and changes nothing.
// The relative position bias and its table gradient: the same bits as the CPU (a gather,
// and per (bucket, head) the CPU's summation order), in both directions, for decoding
// queries past the first position, and into a slice of heads of a wider table.
TEST_F(Parity, PositionBiasAndBackward) {
  const Tensor table = random_tensor({32, 6}, DType::f32, 11);
  for (bool bidirectional : {true, false})
    for (int64_t first_query : {int64_t{0}, int64_t{37}}) {
      SCOPED_TRACE(::testing::Message()
                   << "bidirectional " << bidirectional << " first query " << first_query);
      const Tensor ref = ops::position_bias(table, 45, 90, bidirectional, 128, first_query);
      EXPECT_EQ(
          max_relative_error(
              host(ops::position_bias(gpu(table), 45, 90, bidirectional, 128, first_query)), ref),
          0.0);
      // A bf16 table gives the f32 bias of its bf16 values.
      EXPECT_EQ(max_relative_error(host(ops::position_bias(gpu(table, DType::bf16), 45, 90,
                                                           bidirectional, 128, first_query)),
                                   ops::position_bias(table.to(DType::bf16).to(DType::f32), 45, 90,
                                                      bidirectional, 128, first_query)),
                0.0);
    }
  const Tensor d_bias = random_tensor({4, 150, 150}, DType::f32, 10);
  for (bool bidirectional : {true, false}) {
    SCOPED_TRACE(::testing::Message() << "bidirectional " << bidirectional);
    Tensor d_table_cpu = random_tensor({32, 6}, DType::f32, 13);  // accumulates into this
    Tensor d_table = gpu(d_table_cpu);
    ops::position_bias_backward(d_bias, bidirectional, 128, 2, d_table_cpu);
    ops::position_bias_backward(gpu(d_bias), bidirectional, 128, 2, d_table);
    EXPECT_EQ(max_relative_error(host(d_table), d_table_cpu), 0.0);
  }
}

// The embedding gradient with repeated ids: the same bits as the CPU path in f32 (the ids
// sorted on the device, then one thread per distinct id and column adds its rows in token
// order, as the CPU does), for a small and a T5-sized vocabulary.
TEST_F(Parity, EmbeddingBackward) {
  auto same_bits = [](const std::vector<int32_t>& ids, int64_t vocab, int64_t d, uint32_t seed) {
    const int64_t n = static_cast<int64_t>(ids.size());
    const Tensor id = Tensor::from_vector<int32_t>(ids, {4, n / 4});
    const Tensor dy = random_tensor({4, n / 4, d}, DType::f32, seed);
    Tensor table_cpu = random_tensor({vocab, d}, DType::f32, seed + 1);
    Tensor table = gpu(table_cpu);
    ops::embedding_backward(gpu(dy), id.to(kGpu), table);
    ops::embedding_backward(dy, id, table_cpu);
    EXPECT_EQ(max_relative_error(host(table), table_cpu), 0.0) << vocab;
  };
  std::vector<int32_t> ids(300);
  for (int i = 0; i < 300; ++i) ids[i] = (i * i * 7) % 53;  // repeats, gaps, out of order
  same_bits(ids, 60, 70, 22);
  // A T5-sized vocabulary (15 bits of id sorted on the device), its last id included.
  std::mt19937 gen(24);
  std::vector<int32_t> many(2000);
  for (int32_t& v : many) v = static_cast<int32_t>(gen() % 400) * 80;  // repeats, up to 31920
  many[7] = many[1500] = 32127;
  same_bits(many, 32128, 16, 25);
}

// RMSNorm's backward: dx, and the weight gradient accumulated into what it held, over more
// rows than one chunk of the fixed-order column sums (odd sizes, 2.5 chunks).
TEST_F(Parity, RmsNormBackward) {
  const Tensor x = random_tensor({320, 77}, DType::f32, 12),
               w = random_tensor({77}, DType::f32, 13);
  const Tensor dy = random_tensor({320, 77}, DType::f32, 14);
  Tensor inv_cpu, inv_gpu;
  ops::rms_norm(x, w, 1e-6, &inv_cpu);
  ops::rms_norm(gpu(x), gpu(w), 1e-6, &inv_gpu);
  Tensor dw_cpu = random_tensor({77}, DType::f32, 15);
  Tensor dw = gpu(dw_cpu);
  const Tensor dx = ops::rms_norm_backward(gpu(dy), gpu(x), gpu(w), inv_gpu, dw);
  const Tensor dx_cpu = ops::rms_norm_backward(dy, x, w, inv_cpu, dw_cpu);
  EXPECT_LE(max_relative_error(host(dx), dx_cpu), 1e-5);
  EXPECT_LE(max_relative_error(host(dw), dw_cpu), 1e-5);
  // The same bits when run again (no atomics).
  Tensor dw_again = gpu(random_tensor({77}, DType::f32, 15));
  ops::rms_norm_backward(gpu(dy), gpu(x), gpu(w), inv_gpu, dw_again);
  EXPECT_EQ(max_relative_error(host(dw_again), host(dw)), 0.0);
}

TEST_F(Parity, ActivationBackward) {
  const Tensor x = random_tensor({1000, 37}, DType::f32, 16, 3.0),
               x2 = random_tensor({1000, 37}, DType::f32, 17),
               dy = random_tensor({1000, 37}, DType::f32, 18);
  for (const Precision& p : {kF32, kBf16}) {
    const Tensor gx = gpu(x, p.dtype), gdy = gpu(dy, p.dtype);
    // bf16 inputs: the reference sees the same rounded values.
    const Tensor rx = host(gx), rdy = host(gdy), rx2 = host(gpu(x2, p.dtype));
    EXPECT_LE(max_relative_error(host(ops::relu_backward(gdy, gx)), ops::relu_backward(rdy, rx)),
              p.tolerance);
    EXPECT_LE(max_relative_error(host(ops::gelu_backward(gdy, gx)), ops::gelu_backward(rdy, rx)),
              p.tolerance);
    EXPECT_LE(max_relative_error(host(ops::gelu_exact_backward(gdy, gx)),
                                 ops::gelu_exact_backward(rdy, rx)),
              p.tolerance);
    Tensor dgate, dlinear, dgate_cpu, dlinear_cpu;
    ops::gated_gelu_backward(gdy, gx, gpu(x2, p.dtype), dgate, dlinear);
    ops::gated_gelu_backward(rdy, rx, rx2, dgate_cpu, dlinear_cpu);
    EXPECT_LE(max_relative_error(host(dgate), dgate_cpu), p.tolerance) << dtype_name(p.dtype);
    EXPECT_LE(max_relative_error(host(dlinear), dlinear_cpu), p.tolerance) << dtype_name(p.dtype);
  }
}

// The rounding bf16 storage uses (core/ops/storage.h): the same bits on both devices.
TEST_F(Parity, RoundToBf16) {
  Tensor x = random_tensor({1000}, DType::f32, 41, 5.0);
  x.data<float>()[0] = std::numeric_limits<float>::max();  // rounds to inf
  x.data<float>()[1] = std::numeric_limits<float>::quiet_NaN();
  Tensor on_gpu = gpu(x);
  ops::round_to_bf16_(x);
  ops::round_to_bf16_(on_gpu);
  const Tensor back = host(on_gpu);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float a = x.data<float>()[i], b = back.data<float>()[i];
    if (std::isnan(a)) {
      EXPECT_TRUE(std::isnan(b)) << i;
    } else {
      EXPECT_EQ(a, b) << "element " << i;
    }
  }
}

TEST_F(Parity, Activations) {
  const Tensor x = random_tensor({1000, 37}, DType::f32, 7, 3.0),
               x2 = random_tensor({1000, 37}, DType::f32, 8);
  for (const Precision& p : {kF32, kBf16}) {
    EXPECT_LE(max_relative_error(host(ops::relu(gpu(x, p.dtype))), ops::relu(x)), p.tolerance);
    EXPECT_LE(max_relative_error(host(ops::gelu(gpu(x, p.dtype))), ops::gelu(x)), p.tolerance);
    EXPECT_LE(max_relative_error(host(ops::gated_gelu(gpu(x, p.dtype), gpu(x2, p.dtype))),
                                 ops::gated_gelu(x, x2)),
              p.tolerance);
  }
}

// Softmax in place, logsumexp and the softmax backward over rows longer than a block.
TEST_F(Parity, SoftmaxFamily) {
  const Tensor x = random_tensor({3, 41, 300}, DType::f32, 20, 3.0),
               dp = random_tensor({3, 41, 300}, DType::f32, 21);
  for (const Precision& p : {kF32, kBf16}) {
    const Tensor gx = gpu(x, p.dtype), gdp = gpu(dp, p.dtype);
    const Tensor rx = host(gx), rdp = host(gdp);  // the values the GPU sees
    Tensor probs = gx.clone();
    ops::softmax_(probs);
    const Tensor expected = ops::softmax(rx);
    EXPECT_LE(max_relative_error(host(probs), expected), p.tolerance) << dtype_name(p.dtype);
    EXPECT_LE(max_relative_error(host(ops::logsumexp(gx)), ops::logsumexp(rx)), p.tolerance)
        << dtype_name(p.dtype);
    EXPECT_LE(max_relative_error(host(ops::softmax_backward(gdp, probs)),
                                 ops::softmax_backward(rdp, host(probs))),
              p.tolerance)
        << dtype_name(p.dtype);
  }
}

// The cross-entropy gradient with ignored rows, a scale, and labels on the host or the GPU.
TEST_F(Parity, CrossEntropyBackward) {
  const Tensor logits = random_tensor({37, 1001}, DType::f32, 19, 4.0);
  std::vector<int32_t> labels(37);
  for (int i = 0; i < 37; ++i) labels[i] = i % 5 == 0 ? ops::kIgnoreIndex : (i * 271) % 1001;
  const Tensor l = Tensor::from_vector<int32_t>(labels, {37});
  const Tensor expected = ops::cross_entropy_backward(logits, l, 0.7);
  for (const Precision& p : {kF32, kBf16}) {
    const Tensor g = gpu(logits, p.dtype);
    const Tensor reference =
        p.dtype == DType::f32 ? expected : ops::cross_entropy_backward(host(g), l, 0.7);
    EXPECT_LE(max_relative_error(host(ops::cross_entropy_backward(g, l, 0.7)), reference),
              p.tolerance);
    EXPECT_LE(max_relative_error(host(ops::cross_entropy_backward(g, l.to(kGpu), 0.7)), reference),
              p.tolerance);
  }
}

// Attention's backward (dq, dk, dv, the bias gradient) with a bias, padded keys, causal and
// not, dropout redrawn from its stream, on odd sizes (Tq != Tk, dk not a power of two).
TEST_F(Parity, AttentionBackward) {
  const int64_t B = 3, T = 19, S = 23, H = 3, dk = 12;
  const Tensor q = random_tensor({B, T, H * dk}, DType::f32, 40),
               k = random_tensor({B, S, H * dk}, DType::f32, 41);
  const Tensor v = random_tensor({B, S, H * dk}, DType::f32, 42),
               bias = random_tensor({H, T, S}, DType::f32, 43),
               dout = random_tensor({B, T, H * dk}, DType::f32, 44);
  std::vector<int32_t> mask(B * S, 1);
  mask[0] = mask[S + 22] = mask[2 * S + 5] = mask[2 * S + 6] = 0;
  const Tensor key_mask = Tensor::from_vector<int32_t>(mask, {B, S});
  const Tensor gpu_mask = key_mask.to(kGpu), gpu_bias = gpu(bias);
  for (bool causal : {false, true})
    for (double rate : {0.0, 0.25}) {
      SCOPED_TRACE(::testing::Message() << "causal " << causal << " dropout " << rate);
      ops::AttentionInputs cpu_in, gpu_in;
      cpu_in.bias = &bias;
      cpu_in.key_mask = &key_mask;
      gpu_in.bias = &gpu_bias;
      gpu_in.key_mask = &gpu_mask;
      cpu_in.causal = gpu_in.causal = causal;
      cpu_in.dropout.rate = gpu_in.dropout.rate = rate;
      cpu_in.dropout.stream = gpu_in.dropout.stream =
          RandomStream(4, RandomPurpose::kDropout, 2, 8);
      Tensor probs_cpu, probs_gpu;
      ops::attention(q, k, v, H, cpu_in, &probs_cpu);
      ops::attention(gpu(q), gpu(k), gpu(v), H, gpu_in, &probs_gpu);
      const ops::AttentionGrads ref = ops::attention_backward(dout, q, k, v, probs_cpu, H, cpu_in);
      const ops::AttentionGrads dev =
          ops::attention_backward(gpu(dout), gpu(q), gpu(k), gpu(v), probs_gpu, H, gpu_in);
      EXPECT_LE(max_relative_error(host(dev.dq), ref.dq), 1e-5);
      EXPECT_LE(max_relative_error(host(dev.dk), ref.dk), 1e-5);
      EXPECT_LE(max_relative_error(host(dev.dv), ref.dv), 1e-5);
      EXPECT_LE(max_relative_error(host(dev.dbias), ref.dbias), 1e-5);
      // Without a bias there is no bias gradient.
      ops::AttentionInputs no_bias = gpu_in;
      no_bias.bias = nullptr;
      EXPECT_FALSE(ops::attention_backward(gpu(dout), gpu(q), gpu(k), gpu(v), probs_gpu, H, no_bias)
                       .dbias.defined());
    }
}

// Router weights scaled so the top-1 margin is large: f32 and bf16 route identically.
Tensor router_weights(int64_t experts, int64_t d, uint32_t seed) {
  return random_tensor({experts, d}, DType::f32, seed, 1.0);
}

TEST_F(Parity, RouterWithAndWithoutJitter) {
  const Tensor x = random_tensor({777, 64}, DType::f32, 9);
  // 16 experts take the fused router kernel, 300 the cuBLAS GEMM and softmax kernel.
  for (int64_t experts : {int64_t{16}, int64_t{300}})
    for (bool with_jitter : {false, true}) {
      SCOPED_TRACE(::testing::Message() << experts << " experts, jitter " << with_jitter);
      const Tensor w = router_weights(experts, 64, 10);
      ops::RouterJitter jitter;
      jitter.eps = with_jitter ? 0.01 : 0.0;
      jitter.stream = RandomStream(3, RandomPurpose::kJitter, 5, 11);
      Tensor jittered_cpu, jittered_gpu;
      const ops::RouterOutput cpu = ops::route(x, w, jitter, &jittered_cpu);
      const ops::RouterOutput dev = ops::route(gpu(x), gpu(w), jitter, &jittered_gpu);
      EXPECT_LE(max_relative_error(host(jittered_gpu), jittered_cpu), 1e-7);  // same draws
      EXPECT_LE(max_relative_error(host(dev.logits), cpu.logits), 1e-5);
      EXPECT_LE(max_relative_error(host(dev.probs), cpu.probs), 1e-5);
      EXPECT_LE(max_relative_error(host(dev.gate), cpu.gate), 1e-5);
      const Tensor idx = host(dev.expert_index);
      int64_t disagree = 0;
      for (int64_t t = 0; t < idx.numel(); ++t) disagree += idx.item(t) != cpu.expert_index.item(t);
      EXPECT_EQ(disagree, 0);
    }
  const Tensor w = router_weights(16, 64, 10);
  // bf16 activations: the router still computes f32-precision logits (bf16x3 split on the
  // tensor cores), so it matches the cpu f32 router on the same bf16-exact input.
  const Tensor x_bf16_exact = x.to(DType::bf16).to(DType::f32);
  for (int64_t experts : {int64_t{16}, int64_t{300}}) {
    const Tensor wide = router_weights(experts, 64, 25);
    const ops::RouterOutput bf = ops::route(gpu(x, DType::bf16), gpu(wide), {});
    const ops::RouterOutput ref = ops::route(x_bf16_exact, wide, {});
    EXPECT_EQ(bf.probs.dtype(), DType::f32);
    EXPECT_LE(max_relative_error(host(bf.logits), ref.logits), 1e-5) << experts;
    EXPECT_LE(max_relative_error(host(bf.probs), ref.probs), 1e-5) << experts;
  }
}

// The router's backward through the gates, with and without the load-balancing loss (in
// groups) and the z-loss, and jitter's backward, on the same routing as the CPU.
TEST_F(Parity, RouterBackward) {
  const Tensor x = random_tensor({120, 32}, DType::f32, 30);
  for (int64_t experts : {int64_t{8}, int64_t{130}}) {
    const Tensor w = router_weights(experts, 32, 31);
    const ops::RouterOutput cpu = ops::route(x, w, {});
    const ops::RouterOutput dev = ops::route(gpu(x), gpu(w), {});
    ASSERT_EQ(max_relative_error(host(dev.expert_index), cpu.expert_index), 0.0);
    const Tensor d_gate = random_tensor({120, 1}, DType::f32, 32);
    for (const ops::RouterLossGradients losses :
         {ops::RouterLossGradients{}, ops::RouterLossGradients{0.01, 40, 0.0},
          ops::RouterLossGradients{0.0, 0, 0.001}, ops::RouterLossGradients{0.5, 120, 0.3}}) {
      SCOPED_TRACE(::testing::Message() << experts << " experts, aux " << losses.aux << " in "
                                        << losses.group_size << ", z " << losses.z);
      EXPECT_LE(max_relative_error(host(ops::router_backward(dev, gpu(d_gate), losses)),
                                   ops::router_backward(cpu, d_gate, losses)),
                1e-5);
    }
  }
  ops::RouterJitter jitter;
  jitter.eps = 0.05;
  jitter.stream = RandomStream(6, RandomPurpose::kJitter, 2, 9);
  Tensor grad_cpu = random_tensor({77, 33}, DType::f32, 33);
  Tensor grad = gpu(grad_cpu);
  ops::jitter_backward_(grad_cpu, jitter);
  ops::jitter_backward_(grad, jitter);
  EXPECT_LE(max_relative_error(host(grad), grad_cpu), 1e-7);
}

TEST_F(Parity, RouterTiesGoToTheLowestExpert) {
  const Tensor x = random_tensor({64, 8}, DType::f32, 12);
  const ops::RouterOutput r = ops::route(gpu(x), gpu(Tensor::zeros({5, 8}, DType::f32)), {});
  const Tensor idx = host(r.expert_index);
  for (int64_t t = 0; t < 64; ++t) EXPECT_EQ(idx.item(t), 0);
}

// Capacity on the device equals the cpu assignment exactly, on random, skewed and
// collapsed routing, with experts that get nothing and groups that overflow.
TEST_F(Parity, CapacityAssignment) {
  std::mt19937 gen(13);
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t experts = 1 + gen() % 9, group = 1 + gen() % 40, groups = 1 + gen() % 6;
    const int64_t capacity = gen() % 12;
    const int mode = trial % 3;  // uniform, skewed to expert 0, collapsed to the last expert
    std::vector<int32_t> idx(group * groups);
    for (auto& e : idx)
      e = mode == 2                     ? static_cast<int32_t>(experts - 1)
          : mode == 1 && gen() % 4 != 0 ? 0
                                        : static_cast<int32_t>(gen() % experts);
    const Tensor index = Tensor::from_vector<int32_t>(idx, {static_cast<int64_t>(idx.size()), 1});
    const ops::CapacityAssignment cpu = ops::assign_capacity(index, experts, group, capacity);
    const ops::CapacityAssignment dev =
        ops::assign_capacity(index.to(kGpu), experts, group, capacity);
    EXPECT_EQ(dev.kept_per_expert, cpu.kept_per_expert) << trial;
    EXPECT_EQ(dev.expert_offset, cpu.expert_offset) << trial;
    EXPECT_EQ(dev.dropped, cpu.dropped) << trial;
    EXPECT_EQ(max_relative_error(host(dev.slot), cpu.slot), 0.0) << trial;
    EXPECT_EQ(max_relative_error(host(dev.row), cpu.row), 0.0) << trial;
  }
}

// The router and capacity together: with at least a group per multiprocessor one kernel
// (softmax, top-1 and capacity; with 8 experts the logits from x too), with fewer the
// separate kernels; f32 with and without jitter, bf16 activations; against the cpu's
// route then assign_capacity (bf16 on the same bf16-exact values): probabilities within
// 1e-5, choices, rows and counts exactly; and the same in the fixed padded layout.
TEST_F(Parity, RouteWithCapacityMatchesRouteThenCapacity) {
  struct Case {
    int64_t groups, group, experts;
    double jitter;
    DType dtype;
  };
  for (const Case& c : {Case{512, 16, 8, 0.0, DType::f32}, Case{512, 24, 64, 0.01, DType::f32},
                        Case{300, 32, 40, 0.0, DType::bf16}, Case{512, 16, 8, 0.0, DType::bf16},
                        Case{3, 64, 8, 0.0, DType::f32}, Case{2, 100, 130, 0.01, DType::f32}}) {
    SCOPED_TRACE(::testing::Message()
                 << c.groups << " groups of " << c.group << ", " << c.experts << " experts, jitter "
                 << c.jitter << ", " << dtype_name(c.dtype));
    const int64_t n = c.groups * c.group;
    const Tensor x = host(gpu(random_tensor({n, 48}, DType::f32, 61), c.dtype)).to(DType::f32);
    const Tensor w = router_weights(c.experts, 48, 62);
    ops::RouterJitter jitter;
    jitter.eps = c.jitter;
    jitter.stream = RandomStream(3, RandomPurpose::kJitter, 7, 2);
    const int64_t capacity = std::max<int64_t>(1, c.group / c.experts);  // drops some
    Tensor jittered_cpu, jittered_gpu;
    const ops::RoutedTokens cpu =
        ops::route_with_capacity(x, w, jitter, &jittered_cpu, c.group, capacity);
    const ops::RoutedTokens dev =
        ops::route_with_capacity(gpu(x, c.dtype), gpu(w), jitter, &jittered_gpu, c.group, capacity);
    EXPECT_LE(max_relative_error(host(jittered_gpu).to(DType::f32), jittered_cpu), 1e-7);
    EXPECT_LE(max_relative_error(host(dev.router.logits), cpu.router.logits), 1e-5);
    EXPECT_LE(max_relative_error(host(dev.router.probs), cpu.router.probs), 1e-5);
    EXPECT_LE(max_relative_error(host(dev.router.gate), cpu.router.gate), 1e-5);
    EXPECT_EQ(max_relative_error(host(dev.router.expert_index), cpu.router.expert_index), 0.0);
    EXPECT_EQ(dev.assignment.kept_per_expert, cpu.assignment.kept_per_expert);
    EXPECT_EQ(dev.assignment.expert_offset, cpu.assignment.expert_offset);
    EXPECT_EQ(dev.assignment.dropped, cpu.assignment.dropped);
    EXPECT_GT(cpu.assignment.dropped, 0);
    EXPECT_EQ(max_relative_error(host(dev.assignment.slot), cpu.assignment.slot), 0.0);
    EXPECT_EQ(max_relative_error(host(dev.assignment.row), cpu.assignment.row), 0.0);
    // The fixed padded layout: the same rows padded, the counts left on the device until
    // asked for.
    const int64_t rows = std::min(capacity, c.group) * c.groups;
    const ops::RoutedTokens fixed =
        ops::route_with_capacity(gpu(x, c.dtype), gpu(w), jitter, nullptr, c.group, capacity, rows);
    const ops::CapacityAssignment padded = cpu.assignment.padded(cpu.router.expert_index, rows);
    EXPECT_TRUE(fixed.assignment.device_kept.defined());
    EXPECT_TRUE(fixed.assignment.kept_per_expert.empty());
    EXPECT_EQ(fixed.assignment.expert_offset, padded.expert_offset);
    EXPECT_EQ(max_relative_error(host(fixed.assignment.row), padded.row), 0.0);
    EXPECT_EQ(max_relative_error(host(fixed.assignment.slot), padded.slot), 0.0);
    EXPECT_EQ(fixed.assignment.kept_counts(), cpu.assignment.kept_per_expert);
    EXPECT_EQ(fixed.assignment.dropped_count(), cpu.assignment.dropped);
  }
}

TEST_F(Parity, DispatchAndCombine) {
  const Tensor x = random_tensor({300, 40}, DType::f32, 14);
  std::vector<int32_t> idx(300);
  std::mt19937 gen(15);
  for (auto& e : idx) e = static_cast<int32_t>(gen() % 5 == 0 ? 4 : gen() % 3);  // expert 3: none
  const Tensor index = Tensor::from_vector<int32_t>(idx, {300, 1});
  const ops::CapacityAssignment cpu = ops::assign_capacity(index, 5, 100, 30);  // overflow
  const ops::CapacityAssignment dev = ops::assign_capacity(index.to(kGpu), 5, 100, 30);
  ASSERT_GT(cpu.dropped, 0);
  const Tensor gate = random_tensor({300, 1}, DType::f32, 16);
  for (const Precision& p : {kF32, kBf16}) {
    const Tensor buffer = ops::dispatch(gpu(x, p.dtype), dev);
    const Tensor buffer_cpu = ops::dispatch(x, cpu);
    EXPECT_LE(max_relative_error(host(buffer), buffer_cpu), p.dtype == DType::f32 ? 0.0 : 4e-3);
    const Tensor y = ops::combine(buffer, gpu(gate), dev);
    EXPECT_LE(max_relative_error(host(y), ops::combine(buffer_cpu, gate, cpu)), p.tolerance);
  }
}

// The backwards of dispatch and combine with dropped tokens and an expert none chose, in
// the grouped and the padded layouts (whose padding rows get a zero gradient).
TEST_F(Parity, DispatchAndCombineBackward) {
  std::vector<int32_t> idx(300);
  std::mt19937 gen(24);
  for (auto& e : idx) e = static_cast<int32_t>(gen() % 5 == 0 ? 4 : gen() % 3);  // expert 3: none
  const Tensor index = Tensor::from_vector<int32_t>(idx, {300, 1});
  const ops::CapacityAssignment grouped = ops::assign_capacity(index, 5, 100, 30);
  ASSERT_GT(grouped.dropped, 0);
  const Tensor gate = random_tensor({300, 1}, DType::f32, 25),
               dy = random_tensor({300, 40}, DType::f32, 26);
  for (const ops::CapacityAssignment& cpu : {grouped, grouped.padded(index, 90)}) {
    ops::CapacityAssignment dev = cpu;
    dev.row = cpu.row.to(kGpu);
    dev.slot = cpu.slot.to(kGpu);
    const Tensor d_buffer = random_tensor({cpu.kept(), 40}, DType::f32, 27),
                 expert_out = random_tensor({cpu.kept(), 40}, DType::f32, 28);
    for (const Precision& p : {kF32, kBf16}) {
      const Tensor rd_buffer = host(gpu(d_buffer, p.dtype)), rdy = host(gpu(dy, p.dtype)),
                   rout = host(gpu(expert_out, p.dtype));
      EXPECT_LE(max_relative_error(host(ops::dispatch_backward(gpu(d_buffer, p.dtype), dev)),
                                   ops::dispatch_backward(rd_buffer, cpu)),
                p.tolerance)
          << dtype_name(p.dtype);
      Tensor d_out, d_gate, d_out_cpu, d_gate_cpu;
      ops::combine_backward(gpu(dy, p.dtype), gpu(expert_out, p.dtype), gpu(gate), dev, d_out,
                            d_gate);
      ops::combine_backward(rdy, rout, gate, cpu, d_out_cpu, d_gate_cpu);
      EXPECT_LE(max_relative_error(host(d_out), d_out_cpu), p.tolerance) << dtype_name(p.dtype);
      EXPECT_LE(max_relative_error(host(d_gate), d_gate_cpu), p.tolerance) << dtype_name(p.dtype);
    }
  }
}

TEST_F(Parity, ExpertDropoutMasksMatch) {
  Tensor h = random_tensor({50, 64}, DType::f32, 17);
  ops::DropoutSpec spec;
  spec.rate = 0.3;
  spec.stream = RandomStream(9, RandomPurpose::kDropout, 33, 4);
  std::vector<int64_t> rows(50);
  for (int64_t r = 0; r < 50; ++r) rows[r] = (r * 7) % 50;  // a permuted layout
  Tensor dev = h.to(kGpu), dev_rows = h.to(kGpu);
  ops::dropout_rows_(dev, spec, rows);
  // The rows as a device tensor (the Switch layer's, never read back): the same masks.
  ops::dropout_rows_(dev_rows, spec, Tensor::from_vector<int64_t>(rows, {50}).to(kGpu), 50);
  ops::dropout_rows_(h, spec, rows);
  EXPECT_LE(max_relative_error(host(dev), h), 1e-7);
  EXPECT_LE(max_relative_error(host(dev_rows), h), 1e-7);
}

// A model-parallel part (part 1 of 3 of every row) draws the whole tensor's stream
// elements on the GPU as on the cpu, for dropout and expert dropout, and those are the
// whole tensor's mask restricted to the part.
TEST_F(Parity, DropoutPartsMatch) {
  const Tensor whole = random_tensor({20, 36}, DType::f32, 23);
  ops::DropoutSpec spec;
  spec.rate = 0.4;
  spec.stream = RandomStream(9, RandomPurpose::kDropout, 35, 2);
  const ops::DropoutSpec part = spec.part(12, 3, 1);
  Tensor masked_whole = whole.clone();
  ops::dropout_(masked_whole, spec);
  const Tensor want = take_part(masked_whole, {1, 3, 1});
  Tensor h = take_part(whole, {1, 3, 1}), dev = h.to(kGpu);
  ops::dropout_(h, part);
  ops::dropout_(dev, part);
  EXPECT_EQ(max_relative_error(h, want), 0.0);
  EXPECT_LE(max_relative_error(host(dev), h), 1e-7);
  std::vector<int64_t> rows(20);
  for (int64_t r = 0; r < 20; ++r) rows[r] = (r * 7) % 20;
  Tensor hr = take_part(whole, {1, 3, 1}), devr = hr.to(kGpu);
  ops::dropout_rows_(hr, part, rows);
  ops::dropout_rows_(devr, part, rows);
  EXPECT_LE(max_relative_error(host(devr), hr), 1e-7);
}

// The whole Switch FFN layer, eval and train (jitter, expert dropout), under identical
// routing: the router's margins are large, and routing decisions are compared first.
TEST_F(Parity, SwitchFfnLayer) {
  ModelConfig c = config_from_text(R"(
    d_model: 64 d_ff: 128 num_experts: 6 capacity_mode: CAPACITY_FACTOR
    train_capacity_factor: 1.0 eval_capacity_factor: 1.25 min_capacity: 1
    router_jitter_eps: 0.01 expert_dropout_rate: 0.25)");
  const int64_t n = 512, group = 128, d = 64;
  SwitchWeights cpu_w;
  cpu_w.router = router_weights(6, d, 18);
  cpu_w.experts.wi_0 = random_tensor({6, 128, d}, DType::f32, 19, 0.125);
  cpu_w.experts.wi_1 = random_tensor({6, 128, d}, DType::f32, 20, 0.125);
  cpu_w.experts.wi = random_tensor({6, 128, d}, DType::f32, 21, 0.125);
  cpu_w.experts.wo = random_tensor({6, d, 128}, DType::f32, 22, 0.09);
  // Inputs exactly representable in bf16, so both paths route the very same values.
  const Tensor x = random_tensor({n, d}, DType::f32, 23).to(DType::bf16).to(DType::f32);
  // Capacity modes may take the padded strided-batched layout on the GPU (f32 always does;
  // bf16 when it measured fastest), dropless the grouped one.
  for (auto mode : {ModelConfig::CAPACITY_FACTOR, ModelConfig::CAPACITY_DROPLESS})
    for (auto activation : {ModelConfig::RELU, ModelConfig::GATED_GELU})
      for (const Precision& p : {kF32, kBf16})
        for (bool train : {false, true}) {
          SCOPED_TRACE(::testing::Message() << dtype_name(p.dtype) << " train " << train << " act "
                                            << activation << " mode " << mode);
          c.set_activation(activation);
          c.set_capacity_mode(mode);
          SwitchWeights dev_w;
          dev_w.router = gpu(cpu_w.router);  // the router stays f32
          dev_w.experts.wi = gpu(cpu_w.experts.wi, p.dtype);
          dev_w.experts.wi_0 = gpu(cpu_w.experts.wi_0, p.dtype);
          dev_w.experts.wi_1 = gpu(cpu_w.experts.wi_1, p.dtype);
          dev_w.experts.wo = gpu(cpu_w.experts.wo, p.dtype);
          RunContext ctx;
          ctx.train = train;
          ctx.seed = 77;
          ctx.step = 5;
          const SwitchOutput cpu = switch_ffn(cpu_w, c, x, group, ctx, {1, 2});
          const SwitchOutput dev = switch_ffn(dev_w, c, gpu(x, p.dtype), group, ctx, {1, 2});
          if (p.dtype == DType::f32) {
            const Tensor idx = host(dev.router.expert_index);
            int64_t disagree = 0;
            for (int64_t t = 0; t < n; ++t)
              disagree += idx.item(t) != cpu.router.expert_index.item(t);
            ASSERT_EQ(disagree, 0);
            ASSERT_EQ(dev.assignment.kept_per_expert, cpu.assignment.kept_per_expert);
          }
          if (dev.assignment.kept_per_expert != cpu.assignment.kept_per_expert) {
            ADD_FAILURE() << "routing differs between cpu f32 and gpu " << dtype_name(p.dtype);
            continue;
          }
          if (mode == ModelConfig::CAPACITY_FACTOR) {
            ASSERT_GT(cpu.assignment.dropped, 0);  // capacity overflow exercised
          }
          EXPECT_LE(max_relative_error(host(dev.y), cpu.y), p.tolerance);
        }
}

TEST_F(Parity, DeviceErrorsNameTheDevice) {
  try {
    Tensor::empty({4}, DType::f32, Device::cuda(cuda_device_count()));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:" + std::to_string(cuda_device_count())),
              std::string::npos)
        << e.what();
  }
  const Tensor x = random_tensor({5, 3}, DType::f32, 24);
  EXPECT_EQ(max_relative_error(x.to(kGpu).to(Device::cpu()), x), 0.0);
  EXPECT_THROW(ops::matmul(x.to(kGpu), false, x, true), Error);  // mixed devices
}

}  // namespace
}  // namespace sw
