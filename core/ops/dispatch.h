// Internal helpers shared by the op implementations: dtype dispatch and device checks.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/tensor/philox.h"
#include "core/tensor/tensor.h"

namespace sw::ops {

// Calls fn(T{}) with T = float or double for t; other dtypes are an unsupported error
// naming the op (bf16 compute lives on the GPU).
template <typename Fn>
auto dispatch_float(DType t, const char* op, Fn&& fn) {
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

// True for a tensor on a CUDA device (only possible in a build with CUDA).
inline bool on_cuda(const Tensor& t) { return t.device().kind == Device::Kind::cuda; }

inline void require_cpu(const Tensor& t, const char* op) {
  SW_CHECK(t.device().is_cpu(), Status::kUnsupported, op, ": tensor on ", t.device().str(),
           " but this op has no kernel for that device yet");
}

template <typename T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using MatrixMap = Eigen::Map<RowMatrix<T>>;
template <typename T>
using ConstMatrixMap = Eigen::Map<const RowMatrix<T>>;

// Random draws index a Philox stream by element; beyond its length they would repeat.
inline void check_stream_size(int64_t elements, const char* what) {
  SW_CHECK(static_cast<uint64_t>(elements) <= kMaxStreamElements, Status::kUnsupported, what, ": ",
           elements, " elements exceed one random stream (2^34)");
}

// The last dimension of t and the product of all the others (rows).
inline int64_t last_dim(const Tensor& t) { return t.ndim() ? t.dim(-1) : 1; }
inline int64_t leading_rows(const Tensor& t) {
  const int64_t d = last_dim(t);
  return d ? t.numel() / d : 0;
}

// Row kernels shared by softmax, attention and cross-entropy; max-subtracted, so stable
// for large logits. Sums accumulate in Acc (double for cross-entropy).
template <typename T>
T row_max(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

template <typename T>
void softmax_row(T* x, int64_t n) {
  const T m = row_max(x, n);
  T sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (x[i] = std::exp(x[i] - m));
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
