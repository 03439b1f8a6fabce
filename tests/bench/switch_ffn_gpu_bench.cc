// The Switch FFN layer on the GPU in bf16 at switch-base shapes (d_model 768, d_ff 3072,
// ReLU), E in {8, 32, 128}, 16K and 64K tokens, capacity factor 1.25 per 512-token
// sequence. For each shape: the layer's time and its expert GEMMs' TFLOP/s against cuBLAS
// dense GEMMs of the same FLOPs in the same run, and the share of the layer spent routing
// (router + capacity + dispatch + combine); then the expert GEMM layouts the layer measured
// and chose (core/ops/gemm.h, choose_expert_layout). Prints two tables; --csv FILE writes
// the first.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "core/model/switch_ffn.h"
#include "core/ops/activation.h"
#include "core/ops/capacity.h"
#include "core/ops/dispatch.h"
#include "core/ops/gemm.h"
#include "core/ops/router.h"
#include "core/ops/router_loss.h"
#include "kernels/device.cuh"
#include "kernels/gemm.cuh"
#include "kernels/router.cuh"
#include "tests/bench/gpu_bench_util.h"

namespace {

using sw::Tensor;
using sw::bench::kGpu;
using sw::bench::median_ms;
using sw::bench::random_gpu;

struct Row {
  int64_t experts, tokens, kept;
  double layer_ms, per_group_ms, grouped_api_ms, padded_ms, padded_fused_ms, route_ms, capacity_ms,
      one_kernel_ms, move_ms, dense_ms;
  int64_t padded_rows;
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
      Row r{experts, tokens, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
      r.layer_ms = median_ms([&] { sw::switch_ffn(w, c, x, group, eval, {}); });
      // Stages, timed one by one on the same inputs.
      const sw::SwitchOutput out = sw::switch_ffn(w, c, x, group, eval, {});
      const sw::ops::CapacityAssignment& a = out.assignment;
      r.kept = a.kept();
      const Tensor buffer = sw::ops::dispatch(x, a);
      Tensor hidden = Tensor::empty({a.kept(), ff}, bf16, kGpu);
      Tensor expert_out = Tensor::empty({a.kept(), d}, bf16, kGpu);
      for (auto strategy :
           {sw::kernels::GroupedGemm::kPerGroup, sw::kernels::GroupedGemm::kGroupedApi}) {
        const double ms = median_ms([&] {
          sw::kernels::grouped_matmul(buffer, w.experts.wi, true, hidden, a.expert_offset,
                                      strategy);
          const Tensor activated = sw::ops::relu(hidden);
          sw::kernels::grouped_matmul(activated, w.experts.wo, true, expert_out, a.expert_offset,
                                      strategy);
        });
        (strategy == sw::kernels::GroupedGemm::kPerGroup ? r.per_group_ms : r.grouped_api_ms) = ms;
      }
      // The paper's padded layout: [E, max kept, d], one strided-batched GEMM per projection.
      const int64_t per_expert = a.max_kept();
      r.padded_rows = experts * per_expert;
      const Tensor padded_in = random_gpu({experts, per_expert, d}, 8, 1.0, bf16);
      Tensor padded_h = Tensor::empty({experts, per_expert, ff}, bf16, kGpu);
      Tensor padded_out = Tensor::empty({experts, per_expert, d}, bf16, kGpu);
      r.padded_ms = median_ms([&] {
        sw::ops::batched_matmul(padded_in, false, w.experts.wi, true, padded_h);
        const Tensor activated = sw::ops::relu(padded_h);
        sw::ops::batched_matmul(activated, false, w.experts.wo, true, padded_out);
      });
      // The same with the ReLU in the first GEMM's epilogue (cuBLASLt), as the layer runs it.
      r.padded_fused_ms = median_ms([&] {
        sw::ops::batched_matmul(padded_in, false, w.experts.wi, true, padded_h,
                                sw::ops::Epilogue::kRelu);
        sw::ops::batched_matmul(padded_h, false, w.experts.wo, true, padded_out);
      });
      r.route_ms = median_ms([&] { sw::ops::route(x, w.router, {}); });
      const int64_t capacity = sw::expert_capacity(c, group, false);
      r.capacity_ms = median_ms(
          [&] { sw::ops::assign_capacity(out.router.expert_index, experts, group, capacity); });
      // The router and capacity in one kernel (a block per 512-token group), whatever the
      // rule in kernels/router.cuh would take at this many groups.
      r.one_kernel_ms = median_ms([&] {
        sw::kernels::route_with_capacity(x, w.router, {}, nullptr, group, capacity, 0,
                                         sw::kernels::RoutingKernels::kOneKernel);
      });
      r.move_ms = median_ms([&] { sw::ops::combine(sw::ops::dispatch(x, a), out.router.gate, a); });
      // Dense cuBLAS GEMMs with the experts' FLOPs: [kept, d] x [d, ff] and back.
      const Tensor dense_in = random_gpu({a.kept(), d}, 5, 1.0, bf16);
      const Tensor dense_wi = random_gpu({ff, d}, 6, 0.03, bf16);
      const Tensor dense_wo = random_gpu({d, ff}, 7, 0.02, bf16);
      Tensor dense_h = Tensor::empty({a.kept(), ff}, bf16, kGpu);
      Tensor dense_y = Tensor::empty({a.kept(), d}, bf16, kGpu);
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
      "\n| E | tokens | kept | padded rows | layer ms | experts TFLOP/s on kept rows (per-group / "
      "grouped API / padded batched / padded, ReLU fused) | dense cuBLAS TFLOP/s | best/dense | "
      "route / capacity / dispatch+combine ms | route+capacity in one kernel ms | routing share "
      "|\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
  FILE* f = csv ? std::fopen(csv, "w") : nullptr;
  if (f)
    std::fprintf(f,
                 "experts,tokens,kept,padded_rows,layer_ms,per_group_ms,grouped_api_ms,padded_ms,"
                 "route_ms,capacity_ms,move_ms,dense_ms,padded_fused_ms,one_kernel_ms\n");
  for (const Row& r : rows) {
    const double flops = 4.0 * r.kept * d * ff;
    auto tflops = [&](double ms) { return flops / (ms * 1e-3) / 1e12; };
    const double best =
        std::min({r.per_group_ms, r.grouped_api_ms, r.padded_ms, r.padded_fused_ms});
    const double routing = r.route_ms + r.capacity_ms + r.move_ms;
    std::printf(
        "| %lld | %lld | %lld | %lld | %.3f | %.1f / %.1f / %.1f / %.1f | %.1f | %.2f | %.3f / "
        "%.3f / %.3f | %.3f | %.1f%% |\n",
        static_cast<long long>(r.experts), static_cast<long long>(r.tokens),
        static_cast<long long>(r.kept), static_cast<long long>(r.padded_rows), r.layer_ms,
        tflops(r.per_group_ms), tflops(r.grouped_api_ms), tflops(r.padded_ms),
        tflops(r.padded_fused_ms), tflops(r.dense_ms), r.dense_ms / best, r.route_ms, r.capacity_ms,
        r.move_ms, r.one_kernel_ms, 100.0 * routing / r.layer_ms);
    if (f)
      std::fprintf(f, "%lld,%lld,%lld,%lld,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f\n",
                   static_cast<long long>(r.experts), static_cast<long long>(r.tokens),
                   static_cast<long long>(r.kept), static_cast<long long>(r.padded_rows),
                   r.layer_ms, r.per_group_ms, r.grouped_api_ms, r.padded_ms, r.route_ms,
                   r.capacity_ms, r.move_ms, r.dense_ms, r.padded_fused_ms, r.one_kernel_ms);
  }
  if (f) std::fclose(f);
  // The layouts the layers chose above, from what this process measured.
  std::printf(
      "\n| expert GEMM class: dtype, E, in -> out, largest expert's rows <=, kept rows <= | "
      "padded ms | grouped API ms | per expert ms | chosen |\n|---|---|---|---|---|\n");
  const char* names[] = {"padded", "grouped API", "per expert"};
  for (const sw::ops::ExpertLayoutMeasurement& m : sw::ops::expert_layout_table())
    std::printf("| %s, %lld, %lld -> %lld, %lld, %lld | %.3f | %.3f | %.3f | %s |\n",
                sw::dtype_name(m.dtype), static_cast<long long>(m.experts),
                static_cast<long long>(m.in_features), static_cast<long long>(m.out_features),
                static_cast<long long>(m.rows_bucket), static_cast<long long>(m.kept_bucket),
                m.padded_ms, m.grouped_api_ms, m.per_expert_ms, names[static_cast<int>(m.chosen)]);
  return 0;
}
