// CPU benchmarks (Google Benchmark), reported as rates and as ratios to a reference
// measured in the same run:
//   Forward/<preset>      forward tokens/s at batch 8, encoder 512, decoder 128, and the
//                         process's peak resident memory; Forward/tiny_small at 1 x (16 + 4)
//   SwitchFfn             the Switch FFN forward of the switch-base-8 layer shape (router,
//                         capacity, dispatch, 8 expert FFNs, combine) in GFLOP/s
//   DenseGemm             the library's plain GEMM (ops::matmul: Eigen on fixed tiles, all
//                         threads) doing the same expert FLOPs: the ceiling the Switch FFN
//                         is compared against
//   SquareGemm/<n>        one n^3 GEMM, for scripts/bench-vs-torch
//   ExpertGemm/<E>        the experts' two projections as grouped GEMMs (ops::grouped_matmul)
//                         on 2048 tokens spread evenly over E experts
//   DecodeGemm/<rows>     a decoding step's products: [rows, 768] against the weights of
//                         switch-base-8's attention (768 x 768), FFN (3072 x 768 and back)
//                         and LM head (32128 x 768), each weight read from memory, not cache
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <utility>
#include <vector>

#include "core/data/byte_tokenizer.h"
#include "core/model/switch_ffn.h"
#include "core/model/switch_transformer.h"
#include "core/ops/gemm.h"
#include "core/ops/norm.h"
#include "tests/bench/bench_util.h"

namespace {

constexpr int64_t kBatch = 8, kEncoderLen = 512, kDecoderLen = 128;

void Forward(benchmark::State& state, const char* preset, int64_t batch = kBatch,
             int64_t encoder_len = kEncoderLen, int64_t decoder_len = kDecoderLen) {
  const sw::ModelConfig c = sw::preset(preset);
  const sw::SwitchTransformer model(c, 0);
  const sw::Batch b = sw::bench::random_batch(c, batch, encoder_len, decoder_len);
  for (auto _ : state) benchmark::DoNotOptimize(model.forward(b).loss);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(batch * (encoder_len + decoder_len)),
                         benchmark::Counter::kIsIterationInvariantRate);
  state.counters["params_M"] = model.parameters().num_elements() / 1e6;
  state.counters["peak_rss_GiB"] = sw::bench::peak_rss_gib();
}
BENCHMARK_CAPTURE(Forward, tiny, "tiny")->Unit(benchmark::kMillisecond)->UseRealTime();
// scripts/bench-vs-torch's forward-tiny shape.
BENCHMARK_CAPTURE(Forward, tiny_16x160, "tiny", 16, 128, 32)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
// The shape capi_bench.cc's CApiForward/tiny_small runs through the C ABI.
BENCHMARK_CAPTURE(Forward, tiny_small, "tiny", 1, 16, 4)
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(Forward, switch_base_8, "switch-base-8")
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(2);

sw::Tensor random_normal(const sw::Shape& shape, uint32_t site, double std) {
  sw::Tensor t = sw::Tensor::empty(shape, sw::DType::f32);
  const sw::RandomStream s(3, sw::RandomPurpose::kData, site, 0);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data<float>()[i] = static_cast<float>(std * s.normal(i));
  return t;
}

// The switch-base-8 Switch FFN on one batch of encoder tokens, eval capacity (factor 2.0
// per sequence), no dropout.
void SwitchFfn(benchmark::State& state) {
  sw::ModelConfig c = sw::preset("switch-base-8");
  c.set_capacity_mode(sw::ModelConfig::CAPACITY_FACTOR);
  const int64_t E = c.num_experts(), d = c.d_model(), ff = c.d_ff(), n = kBatch * kEncoderLen;
  sw::SwitchWeights w;
  w.router = random_normal({E, d}, 1, 0.05);
  w.experts.wi = random_normal({E, ff, d}, 2, 1 / std::sqrt(static_cast<double>(d)));
  w.experts.wo = random_normal({E, d, ff}, 3, 1 / std::sqrt(static_cast<double>(ff)));
  const sw::Tensor x = random_normal({n, d}, 4, 1.0);
  const sw::RunContext ctx;
  int64_t kept = 0;
  for (auto _ : state) {
    const sw::SwitchOutput out = sw::switch_ffn(w, c, x, kEncoderLen, ctx, {});
    kept = out.assignment.kept();
    benchmark::DoNotOptimize(out.y.raw());
  }
  const double flops = 2.0 * kept * d * ff * 2 + 2.0 * n * d * E;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["kept_tokens"] = static_cast<double>(kept);
}
BENCHMARK(SwitchFfn)->Unit(benchmark::kMillisecond)->UseRealTime();

// The plain GEMMs [n, d] x [d, ff] and back: the dense FLOPs of the experts' kept tokens.
void DenseGemm(benchmark::State& state) {
  const int64_t n = kBatch * kEncoderLen, d = 768, ff = 3072;
  const sw::Tensor x = sw::Tensor::full({n, d}, sw::DType::f32, 0.5),
                   wi = sw::Tensor::full({d, ff}, sw::DType::f32, 0.01),
                   wo = sw::Tensor::full({ff, d}, sw::DType::f32, 0.01);
  sw::Tensor h = sw::Tensor::empty({n, ff}, sw::DType::f32),
             y = sw::Tensor::empty({n, d}, sw::DType::f32);
  for (auto _ : state) {
    sw::ops::matmul(x, false, wi, false, h);
    sw::ops::matmul(h, false, wo, false, y);
    benchmark::DoNotOptimize(y.raw());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * n * d * ff * 2 / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(DenseGemm)->Unit(benchmark::kMillisecond)->UseRealTime();

// One square f32 GEMM n^3 (ops::matmul), for scripts/bench-vs-torch's row against torch.mm.
void SquareGemm(benchmark::State& state) {
  const int64_t n = state.range(0);
  const sw::Tensor a = sw::Tensor::full({n, n}, sw::DType::f32, 0.5),
                   b = sw::Tensor::full({n, n}, sw::DType::f32, 0.01);
  sw::Tensor c = sw::Tensor::empty({n, n}, sw::DType::f32);
  for (auto _ : state) {
    sw::ops::matmul(a, false, b, false, c);
    benchmark::DoNotOptimize(c.raw());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * n * n * n / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(SquareGemm)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();

// The experts' projections of switch-base-8's layer, [2048, 768] -> [2048, 3072] -> [2048,
// 768], with the tokens split evenly over E experts (weights as the model stores them:
// [E, 3072, 768] and [E, 768, 3072], transposed in the product).
void ExpertGemm(benchmark::State& state) {
  const int64_t experts = state.range(0), n = 2048, d = 768, ff = 3072;
  const sw::Tensor x = sw::Tensor::full({n, d}, sw::DType::f32, 0.5),
                   wi = sw::Tensor::full({experts, ff, d}, sw::DType::f32, 0.01),
                   wo = sw::Tensor::full({experts, d, ff}, sw::DType::f32, 0.01);
  sw::Tensor h = sw::Tensor::empty({n, ff}, sw::DType::f32),
             y = sw::Tensor::empty({n, d}, sw::DType::f32);
  std::vector<int64_t> offsets;
  for (int64_t e = 0; e <= experts; ++e) offsets.push_back(e * n / experts);
  for (auto _ : state) {
    sw::ops::grouped_matmul(x, wi, true, h, offsets);
    sw::ops::grouped_matmul(h, wo, true, y, offsets);
    benchmark::DoNotOptimize(y.raw());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * n * d * ff * 2 / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(ExpertGemm)->Arg(8)->Arg(64)->Unit(benchmark::kMillisecond)->UseRealTime();

// A decoding step's GEMMs at `rows` sequences: x [rows, 768] against 24 attention weights
// (two layers' q, k, v, o and cross q, o), 4 FFN pairs and the LM head, each [out, in] as
// stored (transposed in the product). 230 MB of distinct weights, so each is read from
// memory as in a real step rather than from cache.
void DecodeGemm(benchmark::State& state) {
  const int64_t rows = state.range(0), d = 768, ff = 3072, vocab = 32128;
  std::vector<std::pair<sw::Tensor, sw::Tensor> > products;  // (weight, output)
  auto add = [&](int64_t out, int64_t in, int64_t count) {
    for (int64_t i = 0; i < count; ++i)
      products.emplace_back(sw::Tensor::full({out, in}, sw::DType::f32, 0.01),
                            sw::Tensor::empty({rows, out}, sw::DType::f32));
  };
  add(d, d, 24);
  add(ff, d, 4);
  add(d, ff, 4);
  add(vocab, d, 1);
  const sw::Tensor x = sw::Tensor::full({rows, d}, sw::DType::f32, 0.5),
                   h = sw::Tensor::full({rows, ff}, sw::DType::f32, 0.5);
  double flops = 0;
  for (auto& [w, y] : products) flops += 2.0 * rows * w.dim(0) * w.dim(1);
  for (auto _ : state)
    for (auto& [w, y] : products) {
      sw::ops::matmul(w.dim(1) == d ? x : h, false, w, true, y);
      benchmark::DoNotOptimize(y.raw());
    }
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(DecodeGemm)
    ->Arg(1)
    ->Arg(8)
    ->Arg(32)
    ->Arg(128)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
