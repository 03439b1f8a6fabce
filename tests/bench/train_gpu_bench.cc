// Training on one GPU in f32, TF32 off (the parity mode) and on:
//  1. the Switch FFN layer's forward + backward at switch-base shapes (d_model 768, d_ff
//     3072, ReLU, capacity factor 1.25 per 512-token group), E in {8, 128}, 16K and 64K
//     tokens, against cuBLAS dense GEMMs of the same FLOPs (the forward's two GEMMs and the
//     backward's four, on the kept rows) in the same run;
//  2. whole training steps (forward, backward, clipping, Adafactor) of `tiny` and
//     `switch-base-8` on random tokens: tokens per second, and the device tensor bytes a
//     step adds at its peak over the model, gradients and optimizer state, with and
//     without activation recomputation (TF32 off).
// Prints two tables; --csv PREFIX writes PREFIX_layer.csv and PREFIX_steps.csv.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "core/model/switch_ffn.h"
#include "core/model/switch_transformer.h"
#include "core/ops/gemm.h"
#include "core/train/trainer.h"
#include "kernels/device.cuh"
#include "tests/bench/gpu_bench_util.h"

namespace {

using sw::Tensor;
using sw::bench::kGpu;
using sw::bench::median_ms;

// Seed 13: the training benchmark's own draws.
Tensor random_gpu(const sw::Shape& shape, uint32_t site, double std) {
  return sw::bench::random_gpu(shape, site, std, sw::DType::f32, 13);
}

struct LayerRow {
  bool tf32;
  int64_t experts, tokens, kept;
  double layer_ms, dense_ms;
};

LayerRow bench_layer(int64_t experts, int64_t tokens, bool tf32) {
  const int64_t d = 768, ff = 3072, group = 512;
  sw::ModelConfig c = sw::preset("switch-base-8");
  c.set_num_experts(experts);
  c.set_capacity_mode(sw::ModelConfig::CAPACITY_FACTOR);
  c.set_train_capacity_factor(1.25);
  c.set_min_capacity(1);
  c.set_router_jitter_eps(0.0);
  c.set_expert_dropout_rate(0.0);
  sw::SwitchWeights w;
  w.router = random_gpu({experts, d}, 1, 0.05);
  w.experts.wi = random_gpu({experts, ff, d}, 2, 1 / std::sqrt(768.0));
  w.experts.wo = random_gpu({experts, d, ff}, 3, 1 / std::sqrt(3072.0));
  const Tensor x = random_gpu({tokens, d}, 4, 1.0), dy = random_gpu({tokens, d}, 5, 1e-3);
  sw::RunContext train;
  train.train = true;
  LayerRow r{tf32, experts, tokens, 0, 0, 0};
  r.layer_ms = median_ms(
      [&] {
        const sw::SwitchOutput out = sw::switch_ffn(w, c, x, group, train, {});
        sw::SwitchGradients grads;
        sw::switch_ffn_backward(w, c, x, out, dy, 1.0, 1.0, group, train, {}, grads);
      },
      9, 2);
  r.kept = sw::switch_ffn(w, c, x, group, train, {}).assignment.kept();
  // Dense GEMMs with the experts' FLOPs on the kept rows: y = relu(x Wi^T) Wo^T forward,
  // then dH = dY Wo, dWo = dY^T H, dX = dH Wi, dWi = dH^T X.
  const Tensor dx_in = random_gpu({r.kept, d}, 6, 1.0), wi = random_gpu({ff, d}, 7, 0.03),
               wo = random_gpu({d, ff}, 8, 0.02), d_out = random_gpu({r.kept, d}, 9, 1e-3);
  Tensor h = Tensor::empty({r.kept, ff}, sw::DType::f32, kGpu),
         y = Tensor::empty({r.kept, d}, sw::DType::f32, kGpu),
         dh = Tensor::empty({r.kept, ff}, sw::DType::f32, kGpu),
         dx = Tensor::empty({r.kept, d}, sw::DType::f32, kGpu),
         dwi = Tensor::empty({ff, d}, sw::DType::f32, kGpu),
         dwo = Tensor::empty({d, ff}, sw::DType::f32, kGpu);
  r.dense_ms = median_ms(
      [&] {
        sw::ops::matmul(dx_in, false, wi, true, h);
        sw::ops::matmul(h, false, wo, true, y);
        sw::ops::matmul(d_out, false, wo, false, dh);
        sw::ops::matmul(d_out, true, h, false, dwo);
        sw::ops::matmul(dh, false, wi, false, dx);
        sw::ops::matmul(dh, true, dx_in, false, dwi);
      },
      9, 2);
  return r;
}

// A batch of random tokens: every position real, every label counted.
sw::Batch random_batch(int64_t batch, int64_t input_len, int64_t target_len, int64_t vocab,
                       uint32_t seed) {
  const sw::RandomStream s(seed, sw::RandomPurpose::kData, 0, 0);
  auto ids = [&](int64_t len, uint64_t offset) {
    std::vector<int32_t> v(static_cast<size_t>(batch * len));
    for (size_t i = 0; i < v.size(); ++i)
      v[i] = static_cast<int32_t>(s.uniform(offset + i) * static_cast<double>(vocab - 2)) + 2;
    return Tensor::from_vector<int32_t>(v, {batch, len});
  };
  sw::Batch b;
  b.input_ids = ids(input_len, 0);
  b.attention_mask = Tensor::full({batch, input_len}, sw::DType::i32, 1);
  b.decoder_input_ids = ids(target_len, 1u << 30);
  b.decoder_attention_mask = Tensor::full({batch, target_len}, sw::DType::i32, 1);
  b.labels = ids(target_len, 1u << 31);
  return b;
}

struct StepRow {
  std::string model;
  bool tf32, recompute;
  int64_t batch, input_len, target_len;
  double step_ms, tokens_per_s, loss, step_peak_mib;
};

StepRow bench_steps(const std::string& preset, int64_t batch, int64_t input_len, int64_t target_len,
                    bool tf32, bool recompute) {
  const sw::ModelConfig config = sw::preset(preset);
  sw::SwitchTransformer model(config, 1, sw::DType::f32, kGpu);
  sw::TrainOptions options;
  options.recompute_activations = recompute;
  sw::Trainer trainer(model, options);
  std::vector<sw::Batch> batches;
  for (uint32_t i = 0; i < 4; ++i)
    batches.push_back(random_batch(batch, input_len, target_len, config.vocab_size(), 20 + i));
  size_t next = 0;
  double loss = 0;
  trainer.step({batches[next++]});  // allocates the gradients and the optimizer state
  sw::synchronize(kGpu);
  const size_t resident = sw::live_bytes(kGpu);
  sw::reset_peak_bytes(kGpu);
  const double ms =
      median_ms([&] { loss = trainer.step({batches[next++ % batches.size()]}).loss; }, 5, 2);
  const double peak_mib = static_cast<double>(sw::reset_peak_bytes(kGpu) - resident) / (1 << 20);
  const double tokens = static_cast<double>(batch * (input_len + target_len));
  return {preset, tf32,    recompute, batch, input_len, target_len, ms, tokens / (ms * 1e-3),
          loss,   peak_mib};
}

}  // namespace

int main(int argc, char** argv) {
  const std::string csv = argc == 3 && std::string(argv[1]) == "--csv" ? argv[2] : "";
  if (sw::cuda_device_count() == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  std::vector<LayerRow> layers;
  std::vector<StepRow> steps;
  for (bool tf32 : {false, true}) {
    sw::ops::set_allow_tf32(tf32);
    for (int64_t experts : {8, 128})
      for (int64_t tokens : {16384, 65536}) {
        layers.push_back(bench_layer(experts, tokens, tf32));
        std::fprintf(stderr, "layer E=%lld tokens=%lld tf32=%d done\n",
                     static_cast<long long>(experts), static_cast<long long>(tokens), tf32);
      }
    for (bool recompute : {false, true}) {
      if (tf32 && recompute) continue;
      steps.push_back(bench_steps("tiny", 32, 128, 32, tf32, recompute));
      steps.push_back(bench_steps("switch-base-8", 8, 512, 128, tf32, recompute));
    }
    std::fprintf(stderr, "training steps tf32=%d done\n", tf32);
  }
  sw::ops::set_allow_tf32(false);
  const double d = 768, ff = 3072;
  std::printf(
      "\n| f32 | E | tokens | kept | tokens/expert | Switch FFN fwd+bwd ms | TFLOP/s on kept rows "
      "| dense cuBLAS fwd+bwd TFLOP/s | layer/dense |\n|---|---|---|---|---|---|---|---|---|\n");
  for (const LayerRow& r : layers) {
    const double flops = 12.0 * static_cast<double>(r.kept) * d * ff;
    auto tflops = [&](double ms) { return flops / (ms * 1e-3) / 1e12; };
    std::printf("| %s | %lld | %lld | %lld | %lld | %.3f | %.1f | %.1f | %.2f |\n",
                r.tf32 ? "TF32" : "no TF32", static_cast<long long>(r.experts),
                static_cast<long long>(r.tokens), static_cast<long long>(r.kept),
                static_cast<long long>(r.kept / r.experts), r.layer_ms, tflops(r.layer_ms),
                tflops(r.dense_ms), r.dense_ms / r.layer_ms);
  }
  std::printf(
      "\n| f32 training step | batch x (input + target) | step ms | tokens/s | loss | step peak "
      "MiB |\n|---|---|---|---|---|---|\n");
  for (const StepRow& s : steps)
    std::printf("| %s, %s%s | %lld x (%lld + %lld) | %.1f | %.0f | %.3f | %.1f |\n",
                s.model.c_str(), s.tf32 ? "TF32" : "no TF32", s.recompute ? ", recomputation" : "",
                static_cast<long long>(s.batch), static_cast<long long>(s.input_len),
                static_cast<long long>(s.target_len), s.step_ms, s.tokens_per_s, s.loss,
                s.step_peak_mib);
  if (!csv.empty()) {
    if (FILE* f = std::fopen((csv + "_layer.csv").c_str(), "w")) {
      std::fprintf(f, "tf32,experts,tokens,kept,layer_ms,dense_ms\n");
      for (const LayerRow& r : layers)
        std::fprintf(f, "%d,%lld,%lld,%lld,%.4f,%.4f\n", r.tf32, static_cast<long long>(r.experts),
                     static_cast<long long>(r.tokens), static_cast<long long>(r.kept), r.layer_ms,
                     r.dense_ms);
      std::fclose(f);
    }
    if (FILE* f = std::fopen((csv + "_steps.csv").c_str(), "w")) {
      std::fprintf(f,
                   "model,tf32,recompute,batch,input_len,target_len,step_ms,tokens_per_s,loss,"
                   "step_peak_mib\n");
      for (const StepRow& s : steps)
        std::fprintf(f, "%s,%d,%d,%lld,%lld,%lld,%.3f,%.1f,%.5f,%.1f\n", s.model.c_str(), s.tf32,
                     s.recompute, static_cast<long long>(s.batch),
                     static_cast<long long>(s.input_len), static_cast<long long>(s.target_len),
                     s.step_ms, s.tokens_per_s, s.loss, s.step_peak_mib);
      std::fclose(f);
    }
  }
  return 0;
}
