// Helpers shared by the Eigen implementations (<op>_cpu.cc): a switch over the float
// dtypes, Eigen maps of row-major tensors and the row kernels of the softmax family.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/ops/checks.h"
#include "core/tensor/tensor.h"

namespace sw::ops {

// Calls fn(T{}) with T = float or double for t; other dtypes are an unsupported error
// naming the op (bf16 compute lives on the GPU).
template <typename Fn>
auto visit_float(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::f32:
      return fn(float{});
    case DType::f64:
      return fn(double{});
    default:
      throw Error(Status::kUnsupported, std::string(op) + ": dtype " + dtype_name(t) +
                                            " is not supported on cpu (f32, f64)");
  }
}

// Every input of a cpu implementation is on the cpu (the device switch looked at one).
inline void require_cpu(const Tensor& t, const char* op) {
  SW_CHECK(t.device().is_cpu(), Status::kInvalidArgument, op, ": tensor ", t.str(),
           " is not on the cpu like the op's other inputs");
}

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;

// Row kernels shared by softmax, attention and cross-entropy; max-subtracted, so stable
// for large logits. Sums accumulate in Acc (double for cross-entropy).
template <typename T>
T row_max(const T* x, int64_t n) {
  // The maximum is exact in any order: Eigen's vectorised reduction.
  if (n == 0) return -std::numeric_limits<T>::infinity();
  return Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(x, n).maxCoeff();
}

// softmax_row works on fixed chunks of one vector register (a short tail padded with
// -inf, whose exp is 0): every element takes the same vectorised exp and the sum the same
// lanes wherever the row lies in memory, so results do not depend on alignment.
template <typename T>
void softmax_row(T* x, int64_t n) {
  constexpr int64_t kChunk = 64 / sizeof(T);
  using Chunk = Eigen::Array<T, kChunk, 1>;
  // Eigen's exp clamps its argument (f64: to exp(-709.8) ~ 1e-309); below the smallest
  // denormal's log the true exp is 0, which masked keys must get.
  constexpr T kUnderflow = sizeof(T) == 4 ? T(-103.28) : T(-744.44);
  const T m = row_max(x, n);
  alignas(64) T shifted[kChunk];
  alignas(64) T sums[kChunk] = {};
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t k = std::min(kChunk, n - i);
    std::fill(shifted + k, shifted + kChunk, -std::numeric_limits<T>::infinity());
    for (int64_t j = 0; j < k; ++j) shifted[j] = x[i + j] - m;
    const Chunk e = Eigen::Map<const Chunk, Eigen::Aligned64>(shifted).exp();
    for (int64_t j = 0; j < kChunk; ++j) {
      shifted[j] = shifted[j] < kUnderflow ? T(0) : e[j];
      sums[j] += shifted[j];
    }
    std::copy(shifted, shifted + k, x + i);
  }
  T sum = 0;
  for (T s : sums) sum += s;
  const T inv = T(1) / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

template <typename Acc, typename T>
Acc logsumexp_row(const T* x, int64_t n) {
  const T m = row_max(x, n);
  Acc sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<Acc>(x[i] - m));
  return static_cast<Acc>(m) + std::log(sum);
}

}  // namespace sw::ops
