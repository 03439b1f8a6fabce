// The Switch FFN layer on the GPU in bf16 at switch-base shapes (d_model 768, d_ff 3072,
// ReLU), E in {8, 32, 128}, 16K and 64K tokens, capacity factor 1.25 per 512-token
// sequence. For each shape: the layer's time and its expert GEMMs' TFLOP/s against cuBLAS
// dense GEMMs of the same FLOPs in the same run, and the share of the layer spent routing
// (router + capacity + dispatch + combine). Prints a table; --csv FILE writes it.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "core/model/switch_ffn.h"
#include "core/ops/activation.h"
#include "core/ops/gemm.h"
#include "core/ops/routing.h"
#include "kernels/device.cuh"

namespace {

using sw::Tensor;
const sw::Device kGpu = sw::Device::cuda(0);

Tensor random_gpu(const sw::Shape& shape, uint32_t site, double std, sw::DType dtype) {
  Tensor t = Tensor::empty(shape, sw::DType::f32);
  const sw::RandomStream s(11, sw::RandomPurpose::kData, site, 0);
  float* p = t.data<float>();
  const int64_t n = t.numel();
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(std * s.normal(i));
  return t.to(dtype).to(kGpu);
}

// Median milliseconds of fn over `reps` runs after 3 warm-ups, synchronising around each.
double median_ms(const std::function<void()>& fn, int reps = 15) {
  for (int i = 0; i < 3; ++i) fn();
  sw::kernels::synchronize(0);
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    sw::kernels::synchronize(0);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Row {
  int64_t experts, tokens, kept;
  double layer_ms, experts_ms, routing_ms, dense_ms;
};

}  // namespace

int main(int argc, char** argv) {
  const char* csv = argc == 3 && std::string(argv[1]) == "--csv" ? argv[2] : nullptr;
  if (sw::cuda_device_count() == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  const int64_t d = 768, ff = 3072, group = 512;
  const sw::DType bf16 = sw::DType::bf16;
  std::vector<Row> rows;
  for (int64_t experts : {8, 32, 128}) {
    for (int64_t tokens : {16384, 65536}) {
      sw::ModelConfig c = sw::preset("switch-base-8");
      c.set_num_experts(experts);
      c.set_capacity_mode(sw::ModelConfig::CAPACITY_FACTOR);
      c.set_eval_capacity_factor(1.25);
      c.set_min_capacity(1);
      sw::SwitchWeights w;
      w.router = random_gpu({experts, d}, 1, 0.05, sw::DType::f32);
      w.experts.wi = random_gpu({experts, ff, d}, 2, 1 / std::sqrt(768.0), bf16);
      w.experts.wo = random_gpu({experts, d, ff}, 3, 1 / std::sqrt(3072.0), bf16);
      const Tensor x = random_gpu({tokens, d}, 4, 1.0, bf16);
      const sw::RunContext eval;
      Row r{experts, tokens, 0, 0, 0, 0, 0};
      r.layer_ms = median_ms([&] { sw::switch_ffn(w, c, x, group, eval, 0, 0); });
      // Stages, timed one by one on the same inputs.
      const sw::SwitchOutput out = sw::switch_ffn(w, c, x, group, eval, 0, 0);
      const sw::ops::CapacityAssignment& a = out.assignment;
      r.kept = a.kept();
      const Tensor buffer = sw::ops::dispatch(x, a);
      Tensor hidden = Tensor::empty({a.kept(), ff}, bf16, kGpu);
      Tensor expert_out = Tensor::empty({a.kept(), d}, bf16, kGpu);
      r.experts_ms = median_ms([&] {
        sw::ops::grouped_matmul(buffer, w.experts.wi, true, hidden, a.expert_offset);
        hidden = sw::ops::relu(hidden);
        sw::ops::grouped_matmul(hidden, w.experts.wo, true, expert_out, a.expert_offset);
      });
      r.routing_ms = median_ms([&] {
        const sw::ops::RouterOutput routed = sw::ops::route(x, w.router, {});
        const sw::ops::CapacityAssignment assigned = sw::ops::assign_capacity(
            routed.expert_index, experts, group, sw::expert_capacity(c, group, false));
        const Tensor dispatched = sw::ops::dispatch(x, assigned);
        sw::ops::combine(dispatched, routed.gate, assigned);
      });
      // Dense cuBLAS GEMMs with the experts' FLOPs: [kept, d] x [d, ff] and back.
      const Tensor dense_in = random_gpu({a.kept(), d}, 5, 1.0, bf16);
      const Tensor dense_wi = random_gpu({ff, d}, 6, 0.03, bf16),
                   dense_wo = random_gpu({d, ff}, 7, 0.02, bf16);
      Tensor dense_h = Tensor::empty({a.kept(), ff}, bf16, kGpu),
             dense_y = Tensor::empty({a.kept(), d}, bf16, kGpu);
      r.dense_ms = median_ms([&] {
        sw::ops::matmul(dense_in, false, dense_wi, true, dense_h);
        sw::ops::matmul(dense_h, false, dense_wo, true, dense_y);
      });
      rows.push_back(r);
      std::fprintf(stderr, "E=%lld tokens=%lld done\n", static_cast<long long>(experts),
                   static_cast<long long>(tokens));
    }
  }
  std::printf(
      "\n| E | tokens | kept | layer ms | expert GEMMs TFLOP/s | dense cuBLAS TFLOP/s | "
      "experts/dense | routing share |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  FILE* f = csv ? std::fopen(csv, "w") : nullptr;
  if (f)
    std::fprintf(
        f,
        "experts,tokens,kept,layer_ms,experts_ms,routing_ms,dense_ms,expert_tflops,dense_tflops\n");
  for (const Row& r : rows) {
    const double flops = 4.0 * r.kept * d * ff;
    const double expert_tflops = flops / (r.experts_ms * 1e-3) / 1e12,
                 dense_tflops = flops / (r.dense_ms * 1e-3) / 1e12;
    std::printf("| %lld | %lld | %lld | %.3f | %.1f | %.1f | %.2f | %.1f%% |\n",
                static_cast<long long>(r.experts), static_cast<long long>(r.tokens),
                static_cast<long long>(r.kept), r.layer_ms, expert_tflops, dense_tflops,
                expert_tflops / dense_tflops, 100.0 * r.routing_ms / r.layer_ms);
    if (f)
      std::fprintf(f, "%lld,%lld,%lld,%.4f,%.4f,%.4f,%.4f,%.2f,%.2f\n",
                   static_cast<long long>(r.experts), static_cast<long long>(r.tokens),
                   static_cast<long long>(r.kept), r.layer_ms, r.experts_ms, r.routing_ms,
                   r.dense_ms, expert_tflops, dense_tflops);
  }
  if (f) std::fclose(f);
  return 0;
}
