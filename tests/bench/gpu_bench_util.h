// What the GPU benchmarks share: seeded device tensors and a median of synchronised runs.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/tensor/philox.h"
#include "core/tensor/tensor.h"
#include "kernels/device.cuh"

namespace sw::bench {

inline const Device kGpu = Device::cuda(0);

// N(0, std) from the data stream at `site` (seed `seed`), in dtype on cuda:0.
inline Tensor random_gpu(const Shape& shape, uint32_t site, double std, DType dtype = DType::f32,
                         uint64_t seed = 11) {
  Tensor t = Tensor::empty(shape, DType::f32);
  const RandomStream s(seed, RandomPurpose::kData, site, 0);
  float* p = t.data<float>();
  const int64_t n = t.numel();
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(std * s.normal(i));
  return t.to(dtype).to(kGpu);
}

// Median milliseconds of fn over `reps` runs after `warm` warm-ups, synchronising around
// each.
inline double median_ms(const std::function<void()>& fn, int reps = 15, int warm = 3) {
  for (int i = 0; i < warm; ++i) fn();
  kernels::synchronize(0);
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    kernels::synchronize(0);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace sw::bench
