// Generation on the CPU (Google Benchmark, scripts/bench): 32 new tokens per sequence
// (min_new_tokens = max_new_tokens, so every run does the same work) after a 64-token
// input, greedy, with the decoder's key/value cache (sw::generate) against recomputing the
// encoder and the whole prefix at every step (what generation did before the cache), in
// the same run. Tokens/s counts generated tokens.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>

#include "core/infer/generate.h"
#include "tests/bench/bench_util.h"

namespace {

constexpr int64_t kInputLen = 64, kNewTokens = 32;

void report(benchmark::State& state, int64_t batch) {
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(batch * kNewTokens),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}

void GenerateCached(benchmark::State& state, const char* preset) {
  const int64_t batch = state.range(0);
  const sw::ModelConfig c = sw::preset(preset);
  const sw::SwitchTransformer model(c, 0);
  const sw::Batch b = sw::bench::random_batch(c, batch, kInputLen, 1);
  sw::GenerateOptions o;
  o.max_new_tokens = o.min_new_tokens = kNewTokens;
  for (auto _ : state) benchmark::DoNotOptimize(sw::generate(model, b.input_ids, sw::Tensor(), o));
  report(state, batch);
}

// Generation's two parts apart: the encoder and cross-attention keys (start_decoding), then
// kNewTokens cached decoder steps, each timed on its own (seconds per part per iteration).
void GenerateParts(benchmark::State& state, const char* preset) {
  const int64_t batch = state.range(0);
  const sw::ModelConfig c = sw::preset(preset);
  const sw::SwitchTransformer model(c, 0);
  const sw::Batch b = sw::bench::random_batch(c, batch, kInputLen, 1);
  const sw::Tensor tokens = sw::Tensor::from_vector<int32_t>(
      std::vector<int32_t>(static_cast<size_t>(batch), 0), {batch});
  double encoder_s = 0, decoder_s = 0;
  for (auto _ : state) {
    auto start = std::chrono::steady_clock::now();
    sw::DecoderState s = model.start_decoding(b.input_ids, sw::Tensor(), false);
    auto mid = std::chrono::steady_clock::now();
    for (int64_t t = 0; t < kNewTokens; ++t)
      benchmark::DoNotOptimize(model.decode_step(s, tokens, false));
    auto end = std::chrono::steady_clock::now();
    encoder_s += std::chrono::duration<double>(mid - start).count();
    decoder_s += std::chrono::duration<double>(end - mid).count();
  }
  state.counters["encoder_s"] = benchmark::Counter(encoder_s, benchmark::Counter::kAvgIterations);
  state.counters["decoder_s"] = benchmark::Counter(decoder_s, benchmark::Counter::kAvgIterations);
  report(state, batch);
}

// The reference: a full forward over the input and the prefix for every new token.
void GenerateRecompute(benchmark::State& state, const char* preset) {
  const int64_t batch = state.range(0);
  const sw::ModelConfig c = sw::preset(preset);
  const sw::SwitchTransformer model(c, 0);
  const sw::Batch b = sw::bench::random_batch(c, batch, kInputLen, 1);
  for (auto _ : state) {
    std::vector<int32_t> prefix(static_cast<size_t>(batch), 0);  // [batch, t] row-major
    for (int64_t t = 1; t <= kNewTokens; ++t) {
      sw::Batch step;
      step.input_ids = b.input_ids;
      step.decoder_input_ids = sw::Tensor::from_vector<int32_t>(prefix, {batch, t});
      const sw::Tensor logits = model.forward(step).logits;
      std::vector<int32_t> next;
      for (int64_t s = 0; s < batch; ++s) {
        const float* row = logits.data<float>() + (s * t + t - 1) * c.vocab_size();
        next.push_back(static_cast<int32_t>(std::max_element(row, row + c.vocab_size()) - row));
      }
      std::vector<int32_t> grown;
      for (int64_t s = 0; s < batch; ++s) {
        grown.insert(grown.end(), prefix.begin() + s * t, prefix.begin() + (s + 1) * t);
        grown.push_back(next[static_cast<size_t>(s)]);
      }
      prefix = std::move(grown);
    }
    benchmark::DoNotOptimize(prefix.data());
  }
  report(state, batch);
}

BENCHMARK_CAPTURE(GenerateCached, tiny, "tiny")
    ->Arg(1)
    ->Arg(32)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(GenerateRecompute, tiny, "tiny")
    ->Arg(1)
    ->Arg(32)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(GenerateCached, switch_base_8, "switch-base-8")
    ->Arg(1)
    ->Arg(32)
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(1);
BENCHMARK_CAPTURE(GenerateParts, switch_base_8, "switch-base-8")
    ->Arg(1)
    ->Arg(32)
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(2);
BENCHMARK_CAPTURE(GenerateRecompute, switch_base_8, "switch-base-8")
    ->Arg(1)
    ->Unit(benchmark::kSecond)
    ->UseRealTime()
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
