// Internal helpers shared by the op implementations: dtype dispatch and device checks.
#pragma once

#include <Eigen/Core>

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

// The last dimension of t and the product of all the others (rows).
inline int64_t last_dim(const Tensor& t) { return t.ndim() ? t.dim(-1) : 1; }
inline int64_t leading_rows(const Tensor& t) {
  const int64_t d = last_dim(t);
  return d ? t.numel() / d : 0;
}

}  // namespace sw::ops
