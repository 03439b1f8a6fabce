// The C ABI's cost over the core (Google Benchmark): a forward pass of `tiny` through
// sw_model_forward + sw_result_logits, at the shapes forward_bench.cc runs through the
// core directly (Forward/tiny_small, Forward/tiny), so the two rates give the overhead of
// copying the batch in and the logits out. Links libswitch.so only. scripts/bench runs it.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "libswitch.h"

namespace {

void check(sw_status s) {
  if (s != SW_OK) {
    std::fprintf(stderr, "%s: %s\n", sw_status_string(s), sw_last_error());
    std::exit(1);
  }
}

void CApiForward(benchmark::State& state, int64_t batch, int64_t input_len, int64_t target_len) {
  sw_config* config = nullptr;
  sw_model* model = nullptr;
  check(sw_config_preset("tiny", &config));
  check(sw_model_create(config, "cpu", 0, &model));
  // Fixed valid ids (bench_util.h belongs to the core's side); the cost depends on the ids
  // only through routing.
  std::vector<int32_t> input(static_cast<size_t>(batch * input_len)),
      decoder(static_cast<size_t>(batch * target_len));
  for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<int32_t>((i * 7919) % 384);
  for (size_t i = 0; i < decoder.size(); ++i) decoder[i] = static_cast<int32_t>((i * 104729) % 384);
  sw_batch b;
  SW_INIT_STRUCT(&b);
  b.batch = batch;
  b.input_len = input_len;
  b.target_len = target_len;
  b.input_ids = input.data();
  b.decoder_input_ids = decoder.data();
  b.labels = decoder.data();
  std::vector<float> logits(static_cast<size_t>(batch * target_len * 384));
  for (auto _ : state) {
    sw_result* r = nullptr;
    check(sw_model_forward(model, &b, 0, 0, &r));
    check(sw_result_logits(r, logits.data(), logits.size()));
    sw_result_destroy(r);
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(batch * (input_len + target_len)),
                         benchmark::Counter::kIsIterationInvariantRate);
  sw_model_destroy(model);
  sw_config_destroy(config);
}
BENCHMARK_CAPTURE(CApiForward, tiny_small, 1, 16, 4)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK_CAPTURE(CApiForward, tiny, 8, 512, 128)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
