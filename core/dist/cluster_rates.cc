#include "core/dist/cluster_rates.h"

#include <cmath>

#include "core/model/config.h"
#include "core/tensor/error.h"

namespace sw {
namespace {

struct BuiltIn {
  const char* gpu;
  double memory_bytes, bf16_flops, f32_flops, intra_node, inter_node;
  std::vector<std::string> sources;
};

constexpr double kGiB = 1024.0 * 1024 * 1024;

const std::vector<BuiltIn>& built_in() {
  static const std::vector<BuiltIn> rates = {
      {"h200",
       139 * kGiB,
       790.4e12,
       50.6e12,
       450e9,
       50e9,
       {"memory: 139 GiB usable, as the lent H200 reports it (datasheet: 141 GB)",
        "bf16_flops: measured, cuBLAS GEMM 8192^3 on an H200, docs/PERF.md 2026-11-28 "
        "(datasheet: 989 TFLOP/s dense)",
        "f32_flops: measured, cuBLAS GEMM 8192^3, TF32 off, docs/PERF.md 2026-11-28",
        "intra_node: datasheet, NVLink 4 900 GB/s both ways = 450 GB/s each way",
        "inter_node: datasheet, one 400 Gb/s InfiniBand NDR port per GPU = 50 GB/s",
        "achieved_fraction, latencies: assumptions (libswitch has not measured them)"}},
      {"h100",
       80e9,
       989e12,
       67e12,
       450e9,
       50e9,
       {"every figure: datasheet (H100 SXM 80 GB: 989 TFLOP/s bf16 dense, 67 TFLOP/s f32, "
        "NVLink 4 900 GB/s both ways, 400 Gb/s InfiniBand NDR per GPU)",
        "achieved_fraction, latencies: assumptions"}},
      {"a100",
       80e9,
       312e12,
       19.5e12,
       300e9,
       25e9,
       {"every figure: datasheet (A100 SXM 80 GB: 312 TFLOP/s bf16 dense, 19.5 TFLOP/s f32, "
        "NVLink 3 600 GB/s both ways, 200 Gb/s InfiniBand HDR per GPU)",
        "achieved_fraction, latencies: assumptions"}},
  };
  return rates;
}

}  // namespace

std::vector<std::string> cluster_rate_names() {
  std::vector<std::string> names;
  for (const BuiltIn& b : built_in()) names.push_back(b.gpu);
  return names;
}

ClusterRates cluster_rates(const std::string& gpu) {
  for (const BuiltIn& b : built_in()) {
    if (gpu != b.gpu) continue;
    ClusterRates r;
    r.set_gpu(b.gpu);
    r.set_memory_bytes(b.memory_bytes);
    r.set_bf16_flops(b.bf16_flops);
    r.set_f32_flops(b.f32_flops);
    r.set_intra_node_bytes_per_s(b.intra_node);
    r.set_inter_node_bytes_per_s(b.inter_node);
    for (const std::string& s : b.sources) r.add_sources(s);
    return r;
  }
  std::string known;
  for (const std::string& n : cluster_rate_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(Status::kNotFound,
              "gpu '" + gpu + "': no built-in rates (known: " + known + "; or give a rates file)");
}

void validate(const ClusterRates& r) {
  auto positive = [](double v, const char* field) {
    SW_CHECK_ARG(std::isfinite(v) && v > 0, "rates: ", field, " must be > 0 and finite, got ", v);
  };
  positive(r.memory_bytes(), "memory_bytes");
  positive(r.bf16_flops(), "bf16_flops");
  positive(r.f32_flops(), "f32_flops");
  positive(r.intra_node_bytes_per_s(), "intra_node_bytes_per_s");
  positive(r.inter_node_bytes_per_s(), "inter_node_bytes_per_s");
  SW_CHECK_ARG(r.achieved_fraction() > 0 && r.achieved_fraction() <= 1,
               "rates: achieved_fraction must be in (0, 1], got ", r.achieved_fraction());
  SW_CHECK_ARG(r.intra_node_latency_s() >= 0 && r.inter_node_latency_s() >= 0,
               "rates: latencies must be >= 0");
  SW_CHECK_ARG(r.gpus_per_node() >= 1, "rates: gpus_per_node must be >= 1, got ",
               r.gpus_per_node());
}

ClusterRates cluster_rates_from_text(const std::string& text) {
  ClusterRates r;
  parse_text(text, r, "ClusterRates");
  validate(r);
  return r;
}

}  // namespace sw
