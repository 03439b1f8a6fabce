#include "kernels/expert_layout.cuh"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <tuple>

#include "kernels/device_context.h"
#include "kernels/gemm.cuh"

namespace sw::kernels {
namespace {

// The smallest power of two >= v (1 for v <= 1): shapes within a factor of two share a
// measurement.
int64_t power_of_two_bucket(int64_t v) {
  int64_t b = 1;
  while (b < v) b *= 2;
  return b;
}

// Device, dtype, experts, in, out, transposed, largest rows' bucket, kept rows' bucket,
// whether padding may be used.
using Key = std::tuple<int, int, int64_t, int64_t, int64_t, bool, int64_t, int64_t, bool>;

std::mutex table_mutex;
std::map<Key, ops::ExpertLayoutMeasurement>& table() {
  static auto* t = new std::map<Key, ops::ExpertLayoutMeasurement>();  // never destroyed
  return *t;
}

// Milliseconds per call of fn on the device's stream: one warm-up call (cuBLAS's heuristics,
// its workspace), then the mean of three between two events.
double device_ms(DeviceContext& ctx, const std::function<void()>& fn) {
  fn();
  cudaEvent_t start, stop;
  SW_CUDA_CHECK(cudaEventCreate(&start));
  SW_CUDA_CHECK(cudaEventCreate(&stop));
  SW_CUDA_CHECK(cudaEventRecord(start, ctx.stream));
  constexpr int kReps = 3;
  for (int i = 0; i < kReps; ++i) fn();
  SW_CUDA_CHECK(cudaEventRecord(stop, ctx.stream));
  SW_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  SW_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  SW_CUDA_CHECK(cudaEventDestroy(start));
  SW_CUDA_CHECK(cudaEventDestroy(stop));
  return static_cast<double>(ms) / kReps;
}

// Times x [kept, in] @ op(weight) in each layout that applies, with the layer's own weight
// and zero inputs (a dense GEMM's time does not depend on the values).
ops::ExpertLayoutMeasurement measure(const Tensor& weight, bool transposed,
                                     const std::vector<int64_t>& kept_per_expert,
                                     bool padded_allowed) {
  const int64_t experts = weight.dim(0);
  const int64_t in = transposed ? weight.dim(2) : weight.dim(1);
  const int64_t out = transposed ? weight.dim(1) : weight.dim(2);
  const int64_t largest = *std::max_element(kept_per_expert.begin(), kept_per_expert.end());
  std::vector<int64_t> offsets(experts + 1, 0);
  std::partial_sum(kept_per_expert.begin(), kept_per_expert.end(), offsets.begin() + 1);
  const int64_t kept = offsets.back();
  const DType dtype = weight.dtype();
  const Device device = weight.device();
  DeviceContext& ctx = device_context(weight);
  constexpr double kNotApplicable = std::numeric_limits<double>::infinity();
  ops::ExpertLayoutMeasurement m{dtype,
                                 experts,
                                 in,
                                 out,
                                 transposed,
                                 padded_allowed,
                                 power_of_two_bucket(largest),
                                 power_of_two_bucket(kept),
                                 kNotApplicable,
                                 kNotApplicable,
                                 kNotApplicable,
                                 ops::ExpertLayout::kPerExpert};
  if (padded_allowed && largest > 0) {
    const Tensor x = Tensor::zeros({experts, largest, in}, dtype, device);
    Tensor y = Tensor::empty({experts, largest, out}, dtype, device);
    m.padded_ms = device_ms(ctx, [&] { batched_matmul(x, false, weight, transposed, y); });
  }
  if (kept > 0) {
    const Tensor x = Tensor::zeros({kept, in}, dtype, device);
    Tensor y = Tensor::empty({kept, out}, dtype, device);
    if (dtype == DType::bf16)
      m.grouped_api_ms = device_ms(ctx, [&] {
        grouped_matmul(x, weight, transposed, y, offsets, GroupedGemm::kGroupedApi);
      });
    m.per_expert_ms = device_ms(
        ctx, [&] { grouped_matmul(x, weight, transposed, y, offsets, GroupedGemm::kPerGroup); });
  }
  if (m.padded_ms < std::min(m.grouped_api_ms, m.per_expert_ms))
    m.chosen = ops::ExpertLayout::kPadded;
  else if (m.grouped_api_ms < m.per_expert_ms)
    m.chosen = ops::ExpertLayout::kGroupedApi;
  return m;
}

}  // namespace

ops::ExpertLayout choose_expert_layout(const Tensor& weight, bool transpose_weight,
                                       const std::vector<int64_t>& kept_per_expert,
                                       bool padded_allowed) {
  const int64_t largest = *std::max_element(kept_per_expert.begin(), kept_per_expert.end());
  const int64_t kept = std::accumulate(kept_per_expert.begin(), kept_per_expert.end(), int64_t{0});
  const Key key{weight.device().index,
                static_cast<int>(weight.dtype()),
                weight.dim(0),
                weight.dim(1),
                weight.dim(2),
                transpose_weight,
                power_of_two_bucket(largest),
                power_of_two_bucket(kept),
                padded_allowed};
  // Held while measuring: a second thread with the same class waits for its result.
  const std::lock_guard<std::mutex> lock(table_mutex);
  auto it = table().find(key);
  if (it == table().end())
    it = table()
             .emplace(key, measure(weight, transpose_weight, kept_per_expert, padded_allowed))
             .first;
  return it->second.chosen;
}

std::vector<ops::ExpertLayoutMeasurement> expert_layout_table() {
  const std::lock_guard<std::mutex> lock(table_mutex);
  std::vector<ops::ExpertLayoutMeasurement> out;
  for (const auto& [key, m] : table()) out.push_back(m);
  return out;
}

}  // namespace sw::kernels
