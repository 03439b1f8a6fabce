// Training on one GPU:
//  1. the Switch FFN layer's forward + backward at switch-base shapes (d_model 768, d_ff
//     3072, ReLU, capacity factor 1.25 per 512-token group), 16K and 64K tokens, in f32
//     (TF32 off and on; E in {8, 128}) and bf16 (router f32; E in {8, 32, 128}) against
//     cuBLAS dense GEMMs of the same FLOPs (the forward's two GEMMs and the backward's
//     four, on the kept rows) in the same run;
//  2. whole training steps (forward, backward, clipping, Adafactor) on random tokens: f32
//     (TF32 off and on) and bf16 mixed precision (a bf16 model computes, f32 masters),
//     also in the fixed padded expert layout ("bf16-fixed": no layer waits for the
//     router's counts), `tiny`, `switch-base-8`, and in bf16 switch-base-{8, 32, 128} cut
//     to 4 + 4 layers
//     (step time as experts grow at fixed tokens), switch-large-128 and a
//     switch-xxl-128-wide stack (d_model 4096, 8 experts) cut to 2 + 2 layers to fit one
//     GPU: tokens per second, MFU (model FLOPs, model_flops below, against this run's bf16
//     cuBLAS ceiling: one 8192^3 GEMM), and the device tensor bytes a step adds at its peak
//     over the model, gradients and optimizer state, with and without recomputation.
// Prints two tables; --csv PREFIX writes PREFIX_layer.csv and PREFIX_steps.csv.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <optional>
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
  std::string mode;  // "no TF32", "TF32" (f32) or "bf16" (the router f32)
  int64_t experts, tokens, kept;
  double layer_ms, dense_ms;
};

LayerRow bench_layer(int64_t experts, int64_t tokens, const std::string& mode) {
  const sw::DType dt = mode == "bf16" ? sw::DType::bf16 : sw::DType::f32;
  sw::ops::set_allow_tf32(mode == "TF32");
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
  w.experts.wi = random_gpu({experts, ff, d}, 2, 1 / std::sqrt(768.0)).to(dt);
  w.experts.wo = random_gpu({experts, d, ff}, 3, 1 / std::sqrt(3072.0)).to(dt);
  const Tensor x = random_gpu({tokens, d}, 4, 1.0).to(dt),
               dy = random_gpu({tokens, d}, 5, 1e-3).to(dt);
  sw::RunContext train;
  train.train = true;
  LayerRow r{mode, experts, tokens, 0, 0, 0};
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
  // bf16: the weight gradients f32, as bf16 training keeps them.
  const Tensor dx_in = random_gpu({r.kept, d}, 6, 1.0).to(dt),
               wi = random_gpu({ff, d}, 7, 0.03).to(dt), wo = random_gpu({d, ff}, 8, 0.02).to(dt),
               d_out = random_gpu({r.kept, d}, 9, 1e-3).to(dt);
  Tensor h = Tensor::empty({r.kept, ff}, dt, kGpu), y = Tensor::empty({r.kept, d}, dt, kGpu),
         dh = Tensor::empty({r.kept, ff}, dt, kGpu), dx = Tensor::empty({r.kept, d}, dt, kGpu),
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
  sw::ops::set_allow_tf32(false);
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
  // "f32", "TF32", "bf16", or "bf16-fixed": bf16 in the fixed padded expert layout
  // (TrainOptions::fixed_expert_capacity: no layer waits for the router's counts)
  std::string precision;
  bool recompute;
  int64_t batch, input_len, target_len;
  double step_ms, tokens_per_s, loss, step_peak_mib, tflops;
  double forward_ms;  // the eval forward of the model that computes (0: not measured)
};

// Model FLOPs of one training step, counted as the paper counts a sparse model's: every
// token through its attention, one expert (or the dense FFN) and the router in every block,
// and the LM head; the backward twice the forward; attention over the whole (unmasked)
// length; recomputation not counted.
double model_flops(const sw::ModelConfig& c, int64_t batch, int64_t input_len, int64_t target_len) {
  const double d = static_cast<double>(c.d_model()), ff = static_cast<double>(c.d_ff());
  const double inner = static_cast<double>(c.num_heads() * c.d_kv());
  const double ffn = 2 * d * ff * (c.activation() == sw::ModelConfig::GATED_GELU ? 3 : 2);
  const double router = 2 * d * static_cast<double>(c.num_experts());
  const double in = static_cast<double>(input_len), tgt = static_cast<double>(target_len);
  auto sparse_blocks = [&](sw::Stack stack, int64_t layers) {
    int64_t n = 0;
    for (int64_t i = 0; i < layers; ++i) n += sw::is_sparse_block(c, stack, i);
    return static_cast<double>(n);
  };
  const double enc = static_cast<double>(c.num_encoder_layers()),
               dec = static_cast<double>(c.num_decoder_layers());
  const double per_encoder_token =
      enc * (4 * 2 * d * inner + 2 * 2 * in * inner + ffn) +
      sparse_blocks(sw::Stack::kEncoder, c.num_encoder_layers()) * router +
      dec * 2 * 2 * d * inner;  // the decoder's cross-attention keys and values
  const double per_decoder_token =
      dec *
          (4 * 2 * d * inner + 2 * 2 * tgt * inner + 2 * 2 * d * inner + 2 * 2 * in * inner + ffn) +
      sparse_blocks(sw::Stack::kDecoder, c.num_decoder_layers()) * router +
      2 * d * static_cast<double>(c.vocab_size());
  const double forward =
      static_cast<double>(batch) * (in * per_encoder_token + tgt * per_decoder_token);
  return 3 * forward;
}

StepRow bench_steps(const std::string& name, const sw::ModelConfig& config, int64_t batch,
                    int64_t input_len, int64_t target_len, const std::string& precision,
                    bool recompute, bool time_forward) {
  sw::ops::set_allow_tf32(precision == "TF32");
  sw::SwitchTransformer model(config, 1, sw::DType::f32, kGpu);
  sw::TrainOptions options;
  options.recompute_activations = recompute;
  options.bf16 = precision == "bf16" || precision == "bf16-fixed";
  options.fixed_expert_capacity = precision == "bf16-fixed";
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
  double forward_ms = 0;
  if (time_forward) {  // in bf16 a bf16 copy of the trained weights, as the trainer computes
    std::optional<sw::SwitchTransformer> bf16;
    if (options.bf16) bf16.emplace(model.copy_to(kGpu, sw::DType::bf16));
    const sw::SwitchTransformer& forward = bf16 ? *bf16 : model;
    sw::ForwardOptions eval;
    eval.fixed_expert_capacity = options.fixed_expert_capacity;
    forward_ms = median_ms([&] { forward.forward(batches[next++ % batches.size()], eval); }, 5, 2);
  }
  sw::ops::set_allow_tf32(false);
  return {name,
          precision,
          recompute,
          batch,
          input_len,
          target_len,
          ms,
          tokens / (ms * 1e-3),
          loss,
          peak_mib,
          model_flops(config, batch, input_len, target_len) / (ms * 1e-3) / 1e12,
          forward_ms};
}

// A preset cut to `layers` + `layers` blocks (and to `experts` experts when > 0).
sw::ModelConfig cut(const std::string& preset, int64_t layers, int64_t experts = 0) {
  sw::ModelConfig c = sw::preset(preset);
  c.set_num_encoder_layers(layers);
  c.set_num_decoder_layers(layers);
  if (experts > 0) c.set_num_experts(experts);
  return c;
}

// The bf16 cuBLAS ceiling on this GPU in this run: one 8192^3 GEMM, f32 accumulation.
double bf16_peak_tflops() {
  const int64_t n = 8192;
  const Tensor a = sw::bench::random_gpu({n, n}, 30, 1.0, sw::DType::bf16, 13),
               b = sw::bench::random_gpu({n, n}, 31, 1.0, sw::DType::bf16, 13);
  Tensor c = Tensor::empty({n, n}, sw::DType::bf16, kGpu);
  const double ms = median_ms([&] { sw::ops::matmul(a, false, b, true, c); }, 9, 3);
  return 2.0 * static_cast<double>(n) * n * n / (ms * 1e-3) / 1e12;
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
  for (const std::string mode : {"no TF32", "TF32", "bf16"})
    for (int64_t experts : {8, 32, 128}) {
      if (mode != "bf16" && experts == 32) continue;
      for (int64_t tokens : {16384, 65536}) {
        layers.push_back(bench_layer(experts, tokens, mode));
        std::fprintf(stderr, "layer E=%lld tokens=%lld %s done\n", static_cast<long long>(experts),
                     static_cast<long long>(tokens), mode.c_str());
      }
    }
  const double peak = bf16_peak_tflops();
  struct StepCase {
    std::string name;
    sw::ModelConfig config;
    int64_t batch, input_len, target_len;
    bool f32_too;
  };
  const std::vector<StepCase> cases = {
      {"tiny", sw::preset("tiny"), 32, 128, 32, true},
      {"switch-base-8", sw::preset("switch-base-8"), 8, 512, 128, true},
      // Figure 4's claim at fixed tokens per step: experts 8 -> 128 cost (almost) no time.
      {"switch-base-8, 4+4 layers", cut("switch-base-8", 4), 8, 512, 128, false},
      {"switch-base-32, 4+4 layers", cut("switch-base-32", 4), 8, 512, 128, false},
      {"switch-base-128, 4+4 layers", cut("switch-base-128", 4), 8, 512, 128, false},
      {"switch-large-128, 2+2 layers", cut("switch-large-128", 2), 8, 512, 128, false},
      {"xxl-wide (d 4096, E 8), 2+2 layers", cut("switch-xxl-128", 2, 8), 16, 512, 128, false}};
  for (const StepCase& k : cases) {
    std::vector<std::string> precisions = {"bf16"};
    if (k.f32_too) precisions = {"f32", "TF32", "bf16", "bf16-fixed"};
    for (const std::string& p : precisions)
      for (bool recompute : {false, true}) {
        if ((p == "TF32" || p == "bf16-fixed") && recompute) continue;
        steps.push_back(bench_steps(k.name, k.config, k.batch, k.input_len, k.target_len, p,
                                    recompute, k.f32_too && !recompute));
        std::fprintf(stderr, "training steps %s %s%s done\n", k.name.c_str(), p.c_str(),
                     recompute ? " recompute" : "");
      }
  }
  sw::ops::set_allow_tf32(false);
  const double d = 768, ff = 3072;
  std::printf(
      "\n| precision | E | tokens | kept | tokens/expert | Switch FFN fwd+bwd ms | TFLOP/s on kept "
      "rows | dense cuBLAS fwd+bwd TFLOP/s | layer/dense "
      "|\n|---|---|---|---|---|---|---|---|---|\n");
  for (const LayerRow& r : layers) {
    const double flops = 12.0 * static_cast<double>(r.kept) * d * ff;
    auto tflops = [&](double ms) { return flops / (ms * 1e-3) / 1e12; };
    std::printf("| %s | %lld | %lld | %lld | %lld | %.3f | %.1f | %.1f | %.2f |\n", r.mode.c_str(),
                static_cast<long long>(r.experts), static_cast<long long>(r.tokens),
                static_cast<long long>(r.kept), static_cast<long long>(r.kept / r.experts),
                r.layer_ms, tflops(r.layer_ms), tflops(r.dense_ms), r.dense_ms / r.layer_ms);
  }
  std::printf("\nbf16 cuBLAS ceiling in this run (8192^3): %.1f TFLOP/s\n", peak);
  std::printf(
      "\n| training step | precision | batch x (input + target) | step ms | tokens/s | model "
      "TFLOP/s | MFU | loss | step peak MiB | eval forward ms |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  for (const StepRow& s : steps) {
    char forward[32] = "";
    if (s.forward_ms > 0) std::snprintf(forward, sizeof forward, "%.2f", s.forward_ms);
    std::printf(
        "| %s%s | %s | %lld x (%lld + %lld) | %.1f | %.0f | %.1f | %.1f%% | %.3f | %.1f | %s |\n",
        s.model.c_str(), s.recompute ? ", recomputation" : "", s.precision.c_str(),
        static_cast<long long>(s.batch), static_cast<long long>(s.input_len),
        static_cast<long long>(s.target_len), s.step_ms, s.tokens_per_s, s.tflops,
        100 * s.tflops / peak, s.loss, s.step_peak_mib, forward);
  }
  if (!csv.empty()) {
    if (FILE* f = std::fopen((csv + "_layer.csv").c_str(), "w")) {
      std::fprintf(f, "mode,experts,tokens,kept,layer_ms,dense_ms\n");
      for (const LayerRow& r : layers)
        std::fprintf(f, "%s,%lld,%lld,%lld,%.4f,%.4f\n", r.mode.c_str(),
                     static_cast<long long>(r.experts), static_cast<long long>(r.tokens),
                     static_cast<long long>(r.kept), r.layer_ms, r.dense_ms);
      std::fclose(f);
    }
    if (FILE* f = std::fopen((csv + "_steps.csv").c_str(), "w")) {
      std::fprintf(f,
                   "model,precision,recompute,batch,input_len,target_len,step_ms,tokens_per_s,"
                   "model_tflops,mfu,loss,step_peak_mib,forward_ms\n");
      for (const StepRow& s : steps)
        std::fprintf(f, "\"%s\",%s,%d,%lld,%lld,%lld,%.3f,%.1f,%.2f,%.4f,%.5f,%.1f,%.3f\n",
                     s.model.c_str(), s.precision.c_str(), s.recompute,
                     static_cast<long long>(s.batch), static_cast<long long>(s.input_len),
                     static_cast<long long>(s.target_len), s.step_ms, s.tokens_per_s, s.tflops,
                     s.tflops / peak, s.loss, s.step_peak_mib, s.forward_ms);
      std::fclose(f);
    }
  }
  return 0;
}
