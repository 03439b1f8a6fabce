#include <algorithm>

#include "core/ops/dispatch.h"
#include "core/ops/gemm.h"

namespace sw::ops {
namespace {

struct GemmDims {
  int64_t m, k, n;
};

GemmDims gemm_dims(const Shape& a, bool ta, const Shape& b, bool tb, const char* op) {
  const int64_t m = ta ? a[1] : a[0], ka = ta ? a[0] : a[1];
  const int64_t kb = tb ? b[1] : b[0], n = tb ? b[0] : b[1];
  SW_CHECK_ARG(ka == kb, op, ": inner dimensions differ: ", shape_str(a), (ta ? "^T" : ""), " @ ",
               shape_str(b), (tb ? "^T" : ""));
  return {m, ka, n};
}

template <typename T>
void gemm_2d(const T* a, bool ta, const T* b, bool tb, T* c, GemmDims d, T alpha, T beta) {
  ConstMatrixMap<T> A(a, ta ? d.k : d.m, ta ? d.m : d.k);
  ConstMatrixMap<T> B(b, tb ? d.n : d.k, tb ? d.k : d.n);
  MatrixMap<T> C(c, d.m, d.n);
  if (beta == T(0))
    C.setZero();
  else if (beta != T(1))
    C *= beta;
  if (d.m == 0 || d.n == 0 || d.k == 0) return;
  if (!ta && !tb)
    C.noalias() += alpha * A * B;
  else if (ta && !tb)
    C.noalias() += alpha * A.transpose() * B;
  else if (!ta && tb)
    C.noalias() += alpha * A * B.transpose();
  else
    C.noalias() += alpha * A.transpose() * B.transpose();
}

}  // namespace

void matmul(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, double alpha,
            double beta) {
  for (const Tensor* t : {&a, &b, static_cast<const Tensor*>(&c)}) require_cpu(*t, "matmul");
  SW_CHECK_ARG(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2,
               "matmul: expected 2-D tensors, got ", a.str(), ", ", b.str(), ", ", c.str());
  SW_CHECK_ARG(a.dtype() == b.dtype() && b.dtype() == c.dtype(), "matmul: dtypes differ: ", a.str(),
               ", ", b.str(), ", ", c.str());
  const GemmDims d = gemm_dims(a.shape(), ta, b.shape(), tb, "matmul");
  check_shape(c, {d.m, d.n}, "matmul: output");
  dispatch_float(a.dtype(), "matmul", [&](auto zero) {
    using T = decltype(zero);
    gemm_2d<T>(a.data<T>(), ta, b.data<T>(), tb, c.data<T>(), d, static_cast<T>(alpha),
               static_cast<T>(beta));
  });
}

Tensor matmul(const Tensor& a, bool ta, const Tensor& b, bool tb) {
  SW_CHECK_ARG(a.ndim() == 2 && b.ndim() == 2, "matmul: expected 2-D tensors, got ", a.str(), ", ",
               b.str());
  const GemmDims d = gemm_dims(a.shape(), ta, b.shape(), tb, "matmul");
  Tensor c = Tensor::empty({d.m, d.n}, a.dtype());
  matmul(a, ta, b, tb, c);
  return c;
}

Tensor linear(const Tensor& x, const Tensor& w) {
  SW_CHECK_ARG(w.ndim() == 2 && x.ndim() >= 1, "linear: expected x [..., in] and w [out, in], got ",
               x.str(), ", ", w.str());
  SW_CHECK_ARG(x.dim(-1) == w.dim(1), "linear: input has ", x.dim(-1), " features, weight ",
               shape_str(w.shape()), " expects ", w.dim(1));
  Shape out_shape = x.shape();
  out_shape.back() = w.dim(0);
  Tensor y = matmul(x.view({leading_rows(x), x.dim(-1)}), false, w, true);
  return y.view(out_shape);
}

void batched_matmul(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c,
                    const int64_t* rows) {
  for (const Tensor* t : {&a, &b, static_cast<const Tensor*>(&c)})
    require_cpu(*t, "batched_matmul");
  SW_CHECK_ARG(a.ndim() == 3 && b.ndim() == 3 && c.ndim() == 3,
               "batched_matmul: expected 3-D tensors, got ", a.str(), ", ", b.str(), ", ", c.str());
  SW_CHECK_ARG(a.dtype() == b.dtype() && b.dtype() == c.dtype(), "batched_matmul: dtypes differ");
  const int64_t batch = a.dim(0);
  SW_CHECK_ARG(b.dim(0) == batch && c.dim(0) == batch,
               "batched_matmul: batch sizes differ: ", a.str(), ", ", b.str(), ", ", c.str());
  const GemmDims d =
      gemm_dims({a.dim(1), a.dim(2)}, ta, {b.dim(1), b.dim(2)}, tb, "batched_matmul");
  check_shape(c, {batch, d.m, d.n}, "batched_matmul: output");
  SW_CHECK_ARG(rows == nullptr || !ta, "batched_matmul: row counts need an untransposed a");
  dispatch_float(a.dtype(), "batched_matmul", [&](auto zero) {
    using T = decltype(zero);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* pc = c.data<T>();
    for (int64_t i = 0; i < batch; ++i) {
      GemmDims di = d;
      if (rows) {
        SW_CHECK_ARG(rows[i] >= 0 && rows[i] <= d.m, "batched_matmul: rows[", i, "] = ", rows[i],
                     " outside [0, ", d.m, "]");
        di.m = rows[i];
        std::fill(pc + i * d.m * d.n + di.m * d.n, pc + (i + 1) * d.m * d.n, T(0));
      }
      // Each product is large; Eigen parallelises inside it.
      gemm_2d<T>(pa + i * d.m * d.k, ta, pb + i * d.k * d.n, tb, pc + i * d.m * d.n, di, T(1),
                 T(0));
    }
  });
}

}  // namespace sw::ops
