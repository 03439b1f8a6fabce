// Loops over parameters and gradients that the optimizers and gradient clipping share: a
// checked dispatch on the pair's dtype, and sums that are the same for any thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"
#include "core/train/optimizer.h"

namespace sw {

// The checks of every loop over a parameter and its gradient.
inline void check_pair(const ParameterGradient& pg, const char* who) {
  SW_CHECK_ARG(pg.parameter.defined() && pg.gradient.defined(), who, ": parameter ", pg.name,
               " has no gradient");
  SW_CHECK_ARG(
      pg.parameter.shape() == pg.gradient.shape() && pg.parameter.dtype() == pg.gradient.dtype(),
      who, ": gradient ", pg.gradient.str(), " does not match parameter ", pg.name, " ",
      pg.parameter.str());
  SW_CHECK_ARG(pg.parameter.device() == pg.gradient.device(), who, ": parameter ", pg.name,
               " is on ", pg.parameter.device().str(), ", its gradient on ",
               pg.gradient.device().str());
}

// True for a pair on a GPU, which the CUDA kernels update: f32, a whole tensor or a
// model-parallel part (whose Adafactor statistics the kernels sum over its group,
// kernels/adafactor.cuh; AdamW and clipping need no more than elementwise work and
// sums over the shard groups).
inline bool on_gpu(const ParameterGradient& pg, const char* who) {
  check_pair(pg, who);
  if (pg.parameter.device().is_cpu()) return false;
  SW_CHECK(pg.parameter.dtype() == DType::f32, Status::kUnsupported, who, ": parameter ", pg.name,
           " is ", dtype_name(pg.parameter.dtype()), " on ", pg.parameter.device().str(),
           "; on a GPU the optimizers update f32 parameters");
  return true;
}

// Calls fn(T{}) for a CPU f32 or f64 parameter/gradient pair, checking them first.
template <typename Fn>
void with_pair(const ParameterGradient& pg, const char* who, Fn&& fn) {
  check_pair(pg, who);
  SW_CHECK(pg.parameter.device().is_cpu(), Status::kUnsupported, who, ": parameter ", pg.name,
           " is on ", pg.parameter.device().str(), ", not on the cpu");
  switch (pg.parameter.dtype()) {
    case DType::f32:
      fn(float{});
      break;
    case DType::f64:
      fn(double{});
      break;
    default:
      throw Error(Status::kUnsupported, std::string(who) + ": parameter " + pg.name + " is " +
                                            dtype_name(pg.parameter.dtype()) +
                                            "; the optimizers update f32 or f64 parameters");
  }
}

// Sums f(block) over fixed blocks of kBlock elements: the blocks run in parallel and their
// partial sums are added in order, so the result is the same for any thread count.
inline constexpr int64_t kBlock = 1 << 14;

template <typename F>
double block_sum(int64_t n, F f) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(blocks, 0.0);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) partial[b] = f(b * kBlock, std::min(n, (b + 1) * kBlock));
  double total = 0;
  for (double x : partial) total += x;
  return total;
}

// Sums term(i) over [lo, hi) into kLanes accumulators, element i into lane (i - lo) %
// kLanes, added in lane order at the end: independent lanes let the loop vectorise, and
// the order is fixed by the range alone.
inline constexpr int kLanes = 8;
template <typename F>
double lane_sum(int64_t lo, int64_t hi, F term) {
  double lanes[kLanes] = {};
  int64_t i = lo;
  for (; i + kLanes <= hi; i += kLanes)
    for (int l = 0; l < kLanes; ++l) lanes[l] += term(i + l);
  for (int l = 0; i < hi; ++i, ++l) lanes[l] += term(i);
  double sum = 0;
  for (double x : lanes) sum += x;
  return sum;
}

template <typename T>
double mean_square(const T* x, int64_t n) {
  const double s = block_sum(n, [&](int64_t lo, int64_t hi) {
    return lane_sum(lo, hi, [&](int64_t i) { return static_cast<double>(x[i]) * x[i]; });
  });
  return n ? s / static_cast<double>(n) : 0.0;
}

}  // namespace sw
