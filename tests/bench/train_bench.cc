// CPU training benchmarks (Google Benchmark), reported as rates and, in a summary printed
// after the table, as ratios to references measured in the same run:
//   TrainStep/<preset>    one Trainer step (forward_backward, global-norm clipping,
//                         Adafactor) in encoder + decoder tokens/s, with the process's peak
//                         resident memory and the tensor bytes a step adds at its peak:
//                         tiny at batch 8 x (128 + 32), switch-base-8 at batch 2 x
//                         (128 + 32) and a fixed 3 iterations (seconds each); each also
//                         with activation recomputation (<preset>_recompute)
//   SwitchFfnTrain/<E>    forward + backward of ONE Switch FFN layer of the switch-base-8
//                         shape (d_model 768, d_ff 3072, ReLU) with E experts, on 8
//                         sequences x 256 tokens in train mode (router jitter, expert
//                         dropout 0.1, aux and z losses), E = 8 ... 256
//   DenseFfnTrain         forward + backward of the dense FFN with the expert's shape on the
//                         same tokens: top-1 routing runs one expert FFN per token, so this is
//                         the FLOP-matched dense layer (inner dropout 0.1)
//   EigenGemm             the library's plain f32 GEMMs (ops::matmul: Eigen on fixed tiles,
//                         all threads) of the same six products: the ceiling the
//                         layers' GFLOP/s are compared against
//
// GFLOP/s counts the expert (or dense) FFN GEMMs only: forward x @ wi^T and h @ wo^T,
// backward dh = dy @ wo, dwo = dy^T @ h, dx = dpre @ wi, dwi = dpre^T @ x; six products
// of 2 * rows * d_model * d_ff FLOPs each, so 12 * rows * d_model * d_ff, where rows = the
// kept tokens for the Switch layer (dropped tokens run no expert) and all tokens for the
// dense one. The router (6 * tokens * d_model * E over forward and backward) is left out.
//
// Capacity: the preset's CAPACITY_FIXED (64 per sequence) would be a capacity factor of 2
// at E = 8 and dropless at E = 256, so the layer runs CAPACITY_FACTOR with the train factor
// 1.25 per 256-token sequence (the preset's GROUP_SEQUENCE), min_capacity 4: the layout a
// T5X-style training run dispatches. Both layers accumulate into weight gradients allocated
// once before the timing (as micro-batches do): SwitchTransformer::forward_backward zeroes
// fresh ones every step, an E-proportional memset and page faults that are the allocator's
// and the OS's cost, not the layer's (TrainStep includes it).
//
// The summary gives, per E, switch / dense time (the paper's TPU figure: a FLOP-matched
// Switch layer at 62.5% of dense speed, i.e. 1.6x), time(E) / time(8) (constant FLOPs per
// token: ideally flat in E) and the layer's GFLOP/s against Eigen's.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "core/model/feed_forward.h"
#include "core/model/switch_ffn.h"
#include "core/model/switch_transformer.h"
#include "core/ops/gemm.h"
#include "core/tensor/allocator.h"
#include "core/train/trainer.h"
#include "tests/bench/bench_util.h"

namespace {

void TrainStep(benchmark::State& state, const char* preset, int64_t batch, bool recompute) {
  constexpr int64_t kEncoderLen = 128, kDecoderLen = 32;
  const sw::ModelConfig c = sw::preset(preset);
  sw::SwitchTransformer model(c, 0);
  sw::TrainOptions options;
  options.recompute_activations = recompute;
  sw::Trainer trainer(model, options);
  const std::vector<sw::Batch> micro_batches{
      sw::bench::random_batch(c, batch, kEncoderLen, kDecoderLen)};
  // One step outside the timing: it allocates the optimizer state.
  sw::TrainMetrics metrics = trainer.step(micro_batches);
  const size_t resident = sw::cpu_live_bytes();
  sw::reset_cpu_peak_bytes();
  for (auto _ : state) {
    metrics = trainer.step(micro_batches);
    benchmark::DoNotOptimize(metrics.loss);
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(metrics.tokens),
                                                  benchmark::Counter::kIsIterationInvariantRate);
  state.counters["params_M"] = model.parameters().num_elements() / 1e6;
  // The last step's phases (seconds).
  state.counters["fwd_bwd_s"] = metrics.phases.forward_backward;
  state.counters["clip_s"] = metrics.phases.clip;
  state.counters["optimizer_s"] = metrics.phases.optimizer;
  state.counters["peak_rss_GiB"] = sw::bench::peak_rss_gib();
  // Host tensor bytes a step adds at its peak over the model and optimizer state.
  state.counters["step_peak_MiB"] =
      static_cast<double>(sw::reset_cpu_peak_bytes() - resident) / (1 << 20);
}
BENCHMARK_CAPTURE(TrainStep, tiny, "tiny", 8, false)->Unit(benchmark::kMillisecond)->UseRealTime();
// Activation recomputation (TrainOptions::recompute_activations): step_peak_MiB against
// the line above, and the time it costs.
BENCHMARK_CAPTURE(TrainStep, tiny_recompute, "tiny", 8, true)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(TrainStep, switch_base_8, "switch-base-8", 2, false)
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(3);
BENCHMARK_CAPTURE(TrainStep, switch_base_8_recompute, "switch-base-8", 2, true)
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(3);

// The Switch FFN layer's shape and tokens.
constexpr int64_t kDModel = 768, kDFf = 3072, kSequences = 8, kSequenceLen = 256;
constexpr int64_t kTokens = kSequences * kSequenceLen;
constexpr double kDropout = 0.1;

sw::Tensor random_normal(const sw::Shape& shape, uint32_t site, double std) {
  sw::Tensor t = sw::Tensor::empty(shape, sw::DType::f32);
  const sw::RandomStream s(3, sw::RandomPurpose::kData, site, 0);
  float* p = t.data<float>();
  const int64_t n = t.numel();
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(std * s.normal(i));
  return t;
}

// E copies of one random [rows, cols] matrix: drawing E x 2.4M normals per projection
// would dominate the setup at E = 256, and the GEMMs' cost does not depend on the values.
sw::Tensor stacked(const sw::Tensor& matrix, int64_t experts) {
  sw::Tensor t = sw::Tensor::empty({experts, matrix.dim(0), matrix.dim(1)}, sw::DType::f32);
  for (int64_t e = 0; e < experts; ++e) {
    sw::Tensor slice = t.slice(e, e + 1).view(matrix.shape());
    slice.copy_from(matrix);
  }
  return t;
}

const sw::Tensor& dense_wi() {
  static const sw::Tensor w = random_normal({kDFf, kDModel}, 2, 1 / std::sqrt(double{kDModel}));
  return w;
}
const sw::Tensor& dense_wo() {
  static const sw::Tensor w = random_normal({kDModel, kDFf}, 3, 1 / std::sqrt(double{kDFf}));
  return w;
}
const sw::Tensor& layer_input() {
  static const sw::Tensor x = random_normal({kTokens, kDModel}, 4, 1.0);
  return x;
}
const sw::Tensor& output_gradient() {
  static const sw::Tensor dy = random_normal({kTokens, kDModel}, 5, 1.0);
  return dy;
}

sw::RunContext train_context() {
  sw::RunContext ctx;
  ctx.train = true;
  ctx.seed = 7;
  return ctx;
}

double ffn_train_flops(int64_t rows) { return 12.0 * rows * kDModel * kDFf; }

void SwitchFfnTrain(benchmark::State& state) {
  const int64_t experts = state.range(0);
  sw::ModelConfig c = sw::preset("switch-base-8");
  c.set_num_experts(experts);
  c.set_capacity_mode(sw::ModelConfig::CAPACITY_FACTOR);
  c.set_train_capacity_factor(1.25);
  c.set_expert_dropout_rate(kDropout);
  sw::SwitchWeights w;
  w.router = random_normal({experts, kDModel}, 1, 0.05);
  w.experts.wi = stacked(dense_wi(), experts);
  w.experts.wo = stacked(dense_wo(), experts);
  const sw::RunContext ctx = train_context();
  sw::SwitchGradients grads;
  grads.router = sw::Tensor::zeros(w.router.shape(), sw::DType::f32);
  grads.experts.wi = sw::Tensor::zeros(w.experts.wi.shape(), sw::DType::f32);
  grads.experts.wo = sw::Tensor::zeros(w.experts.wo.shape(), sw::DType::f32);
  int64_t kept = 0;
  auto forward_backward = [&] {
    const sw::SwitchOutput out = sw::switch_ffn(w, c, layer_input(), kSequenceLen, ctx, {0, 1});
    const sw::Tensor dx = sw::switch_ffn_backward(w, c, layer_input(), out, output_gradient(), 1.0,
                                                  1.0, kSequenceLen, ctx, {0, 1}, grads);
    kept = out.assignment.kept();
    benchmark::DoNotOptimize(dx.raw());
  };
  forward_backward();  // untimed: the first touch of the gradients' and buffers' pages
  for (auto _ : state) forward_backward();
  state.counters["GFLOP/s"] = benchmark::Counter(ffn_train_flops(kept) / 1e9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  state.counters["kept_tokens"] = static_cast<double>(kept);
  state.counters["capacity"] =
      static_cast<double>(sw::expert_capacity(c, kSequenceLen, /*train=*/true));
}
BENCHMARK(SwitchFfnTrain)
    ->ArgName("E")
    ->Arg(8)
    ->Arg(16)
    ->Arg(32)
    ->Arg(64)
    ->Arg(128)
    ->Arg(256)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void DenseFfnTrain(benchmark::State& state) {
  sw::FeedForwardWeights w;
  w.wi = dense_wi();
  w.wo = dense_wo();
  const sw::ops::DropoutSpec dropout = train_context().dropout(1, kDropout);
  sw::FeedForwardWeights grads;
  grads.wi = sw::Tensor::zeros(w.wi.shape(), sw::DType::f32);
  grads.wo = sw::Tensor::zeros(w.wo.shape(), sw::DType::f32);
  auto forward_backward = [&] {
    sw::FeedForwardCache cache;
    const sw::Tensor y = sw::feed_forward(w, sw::ModelConfig::RELU, layer_input(), dropout, &cache);
    const sw::Tensor dx = sw::feed_forward_backward(w, sw::ModelConfig::RELU, layer_input(),
                                                    dropout, cache, output_gradient(), grads);
    benchmark::DoNotOptimize(y.raw());
    benchmark::DoNotOptimize(dx.raw());
  };
  forward_backward();  // untimed, as for the Switch layer
  for (auto _ : state) forward_backward();
  state.counters["GFLOP/s"] = benchmark::Counter(ffn_train_flops(kTokens) / 1e9,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(DenseFfnTrain)->Unit(benchmark::kMillisecond)->UseRealTime();

// The six products of the FFN's forward and backward, as plain GEMMs on all tokens.
void EigenGemm(benchmark::State& state) {
  const int64_t n = kTokens, d = kDModel, ff = kDFf;
  auto full = [](sw::Shape shape, double v) { return sw::Tensor::full(shape, sw::DType::f32, v); };
  const sw::Tensor x = full({n, d}, 0.5), dy = full({n, d}, 0.1), wi = full({d, ff}, 0.01),
                   wo = full({ff, d}, 0.01);
  sw::Tensor h = full({n, ff}, 0), y = full({n, d}, 0), dh = full({n, ff}, 0), dx = full({n, d}, 0),
             dwi = full({d, ff}, 0), dwo = full({ff, d}, 0);
  for (auto _ : state) {
    sw::ops::matmul(x, false, wi, false, h);
    sw::ops::matmul(h, false, wo, false, y);
    sw::ops::matmul(dy, false, wo, true, dh);
    sw::ops::matmul(h, true, dy, false, dwo);
    sw::ops::matmul(dh, false, wi, true, dx);
    sw::ops::matmul(x, true, dh, false, dwi);
    benchmark::DoNotOptimize(y.raw());
    benchmark::DoNotOptimize(dx.raw());
    benchmark::DoNotOptimize(dwi.raw());
    benchmark::DoNotOptimize(dwo.raw());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(ffn_train_flops(n) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(EigenGemm)->Unit(benchmark::kMillisecond)->UseRealTime();

// The console table, then the cross-benchmark ratios from the runs it recorded (Google
// Benchmark reports each run on its own).
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  SummaryReporter() : ConsoleReporter(OO_None) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      std::string name = run.run_name.function_name;
      if (!run.run_name.args.empty()) name += "/" + run.run_name.args;
      // With --benchmark_repetitions, the fastest: on a shared machine noise only adds time.
      const double seconds = run.real_accumulated_time / static_cast<double>(run.iterations);
      const auto [it, added] = results_.try_emplace(name);
      if (!added && it->second.seconds <= seconds) continue;
      it->second.seconds = seconds;
      for (const auto& [counter, value] : run.counters) it->second.counters[counter] = value.value;
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    const Result* dense = find("DenseFfnTrain");
    const Result* eigen = find("EigenGemm");
    const Result* base = find("SwitchFfnTrain/E:8");
    const double eigen_rate = eigen ? eigen->counters.at("GFLOP/s") : 0;
    print("\nSwitch FFN fwd+bwd vs dense FFN fwd+bwd (d_model %d, d_ff %d, %d tokens, train)\n",
          static_cast<int>(kDModel), static_cast<int>(kDFf), static_cast<int>(kTokens));
    print("%6s %10s %13s %16s %9s %14s\n", "E", "ms", "switch/dense", "time(E)/time(8)", "GFLOP/s",
          "GFLOP/s/Eigen");
    for (const int e : {8, 16, 32, 64, 128, 256}) {
      const Result* r = find("SwitchFfnTrain/E:" + std::to_string(e));
      if (!r) continue;
      const double rate = r->counters.at("GFLOP/s");
      print("%6d %10.1f %13s %16s %9.1f %14s\n", e, r->seconds * 1e3,
            ratio(r->seconds, dense ? dense->seconds : 0).c_str(),
            ratio(r->seconds, base ? base->seconds : 0).c_str(), rate,
            ratio(rate, eigen_rate).c_str());
    }
    if (dense)
      print("dense FFN  %10.1f ms %9.1f GFLOP/s (%s of Eigen's)\n", dense->seconds * 1e3,
            dense->counters.at("GFLOP/s"),
            ratio(dense->counters.at("GFLOP/s"), eigen_rate).c_str());
    if (eigen) print("Eigen GEMM %10.1f ms %9.1f GFLOP/s\n", eigen->seconds * 1e3, eigen_rate);
    print("%s\n", "targets: switch/dense <= 1.3, time(256)/time(8) <= 1.2");
    for (const char* preset : {"tiny", "switch_base_8"})
      if (const Result* r = find(std::string("TrainStep/") + preset))
        print("training %-14s %10.0f tokens/s, %.3f s/step\n", preset, r->counters.at("tokens/s"),
              r->seconds);
  }

 private:
  struct Result {
    double seconds = 0;
    std::map<std::string, double> counters;
  };

  const Result* find(const std::string& name) const {
    const auto it = results_.find(name);
    return it == results_.end() ? nullptr : &it->second;
  }
  static std::string ratio(double a, double b) {
    if (b <= 0) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.2f", a / b);
    return text;
  }
  template <typename... Args>
  void print(const char* format, Args... args) {
    char line[256];
    std::snprintf(line, sizeof line, format, args...);
    GetOutputStream() << line;
  }

  std::map<std::string, Result> results_;
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
