#include "core/train/gradient_clipping.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "core/ops/elementwise.h"
#include "core/tensor/device_switch.h"
#include "core/train/parameter_loops.h"
#include "kernels/gradient_clipping.cuh"

namespace sw {
namespace {

double gpu_sum_of_squares([[maybe_unused]] const std::vector<Tensor>& gradients) {
  SW_RUN_ON_CUDA(kernels::sum_of_squares(gradients));
}

}  // namespace

double clip_gradient_norm(std::vector<ParameterGradient>& grads, double max_norm) {
  // Squares summed per set of groups (in the order the sets first appear, the same on
  // every rank): whole parameters under {null, null}, a sharded one under its shard group
  // (and its expert group for an expert's part under ep x mp).
  using Groups = std::pair<Communicator*, Communicator*>;
  auto real = [](Communicator* c) { return c && c->size() > 1 ? c : nullptr; };
  std::vector<Groups> groups = {{nullptr, nullptr}};
  std::vector<double> sums = {0.0};
  std::vector<std::vector<Tensor>> on_gpus(1);  // f32 gradients on a GPU: summed there, in order
  for (const ParameterGradient& pg : grads) {
    const Groups key{real(pg.shard_group), real(pg.expert_group)};
    const size_t at = std::find(groups.begin(), groups.end(), key) - groups.begin();
    if (at == groups.size()) groups.push_back(key), sums.push_back(0.0), on_gpus.emplace_back();
    if (on_gpu(pg, "clip_gradient_norm")) {
      on_gpus[at].push_back(pg.gradient);
      continue;
    }
    with_pair(pg, "clip_gradient_norm", [&](auto zero) {
      using T = decltype(zero);
      sums[at] += mean_square(pg.gradient.data<T>(), pg.gradient.numel()) * pg.gradient.numel();
    });
  }
  for (size_t i = 0; i < groups.size(); ++i)
    if (!on_gpus[i].empty()) sums[i] += gpu_sum_of_squares(on_gpus[i]);
  double sum_sq = sums[0];
  for (size_t i = 1; i < groups.size(); ++i) {
    Tensor t = Tensor::from_vector<double>({sums[i]}, {1});
    for (Communicator* c : {groups[i].first, groups[i].second})
      if (c) c->all_reduce_sum(t);
    sum_sq += t.data<double>()[0];
  }
  const double norm = std::sqrt(sum_sq);
  if (max_norm > 0 && norm > max_norm) {
    const double scale = max_norm / norm;
    for (ParameterGradient& pg : grads) {
      if (!pg.gradient.device().is_cpu()) {
        ops::scale_(pg.gradient, scale);
        continue;
      }
      with_pair(pg, "clip_gradient_norm", [&](auto zero) {
        using T = decltype(zero);
        T* g = pg.gradient.data<T>();
        const int64_t n = pg.gradient.numel();
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) g[i] = static_cast<T>(g[i] * scale);
      });
    }
  }
  return norm;
}

}  // namespace sw
