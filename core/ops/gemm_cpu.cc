#include <algorithm>
#include <functional>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef SW_WITH_BLIS
#include <blis.h>
#endif

#include "core/ops/activation.h"
#include "core/ops/cpu_util.h"
#include "core/ops/gemm.h"

namespace sw::ops::cpu {
namespace {

struct GemmDims {
  int64_t m, k, n;
};

// The output is cut into fixed tiles computed in parallel, each by one thread (BLIS's
// serial kernels, or Eigen built with EIGEN_DONT_PARALLELIZE). The tiling depends only on
// the shape, so every element is summed in the same order whatever the thread count: a
// threaded GEMM would pick its blocking, and so the order of the sums over k, from the
// number of threads.
// Tiles of 512 where an extent has room for two (fewer repacks of each operand panel:
// BLIS reached 0.7 of its speed on 256-wide tiles), else 256 (parallelism for the smaller
// products). docs/PERF.md, "The CPU path against PyTorch".
int64_t tile_extent(int64_t extent) { return extent >= 1024 ? 512 : 256; }

// Below this many multiply-adds a tile goes to Eigen: BLIS's set-up per call costs more
// than its faster kernel saves on the small products of small models.
constexpr int64_t kBlisFrom = int64_t{1} << 21;
// Tiles with at least this many rows and columns take BLIS's packed path.
constexpr int64_t kPackedFrom = 64;

// c[rows, cols] = alpha * op(a) @ op(b) + beta * c over k, every operand row-major with the
// given leading dimension; a transposed operand is the same memory read with its strides
// swapped. beta is 0 or 1 (1: accumulate).
template <typename T>
void tile_product(const T* a, bool ta, int64_t lda, const T* b, bool tb, int64_t ldb, T* c,
                  int64_t ldc, int64_t rows, int64_t cols, int64_t k, T alpha, T beta) {
#ifdef SW_WITH_BLIS
  if (rows * cols * k >= kBlisFrom) {
    const inc_t rsa = ta ? 1 : lda, csa = ta ? lda : 1, rsb = tb ? 1 : ldb, csb = tb ? ldb : 1;
    // BLIS's unpacked path for "small" products (sup) wins only on a few rows or columns
    // (a decoding step's 32 rows); on tiles of 64 and more in both, packing ran 1.3-1.9x
    // faster (docs/PERF.md).
    rntm_t runtime;
    bli_rntm_init(&runtime);
    if (rows >= kPackedFrom && cols >= kPackedFrom) bli_rntm_disable_l3_sup(&runtime);
    if constexpr (std::is_same_v<T, float>)
      bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, rows, cols, k, &alpha, const_cast<T*>(a),
                   rsa, csa, const_cast<T*>(b), rsb, csb, &beta, c, ldc, 1, nullptr, &runtime);
    else
      bli_dgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, rows, cols, k, &alpha, const_cast<T*>(a),
                   rsa, csa, const_cast<T*>(b), rsb, csb, &beta, c, ldc, 1, nullptr, &runtime);
    return;
  }
#endif
  using Strided = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<> >;
  Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<> > C(c, rows, cols, Eigen::OuterStride<>(ldc));
  if (beta == T(0)) C.setZero();
  const Strided A(a, ta ? k : rows, ta ? rows : k, Eigen::OuterStride<>(lda));
  const Strided B(b, tb ? cols : k, tb ? k : cols, Eigen::OuterStride<>(ldb));
  if (!ta && !tb)
    C.noalias() += alpha * A * B;
  else if (ta && !tb)
    C.noalias() += alpha * A.transpose() * B;
  else if (!ta && tb)
    C.noalias() += alpha * A * B.transpose();
  else
    C.noalias() += alpha * A.transpose() * B.transpose();
}

// One GEMM, c [m, n] = alpha * op(a) @ op(b) + beta * c (beta 0 or 1), cut into its tiles.
template <typename T>
struct TiledGemm {
  const T* a;
  bool ta;
  const T* b;
  bool tb;
  T* c;
  GemmDims d;
  T alpha, beta;

  int64_t tile_rows() const { return tile_extent(d.m); }
  int64_t tile_cols() const {
    // One row of fewer than four tiles ([32, 768] @ [768, 768] in a decoding step) would
    // leave a thread idle a third of the time: narrower tiles.
    if (d.m <= tile_rows() && d.n > 256 && d.n < 1024) return 128;
    return tile_extent(d.n);
  }
  int64_t col_tiles() const { return (d.n + tile_cols() - 1) / tile_cols(); }
  int64_t tiles() const {
    if (d.m == 0 || d.n == 0) return 0;
    return (d.m + tile_rows() - 1) / tile_rows() * col_tiles();
  }
  void run_tile(int64_t t) const {
    const int64_t r0 = t / col_tiles() * tile_rows(), c0 = t % col_tiles() * tile_cols();
    const int64_t rows = std::min(tile_rows(), d.m - r0), cols = std::min(tile_cols(), d.n - c0);
    T* ct = c + r0 * d.n + c0;
    const int64_t lda = ta ? d.m : d.k, ldb = tb ? d.k : d.n;
    tile_product(a + (ta ? r0 : r0 * lda), ta, lda, b + (tb ? c0 * ldb : c0), tb, ldb, ct, d.n,
                 rows, cols, d.k, alpha, beta);
  }
};

// Runs every tile of every GEMM in `gemms`, and each of `extra` whole, in parallel as one
// list: the small products of many experts keep both threads busy, where a parallel loop
// per product would leave one idle on a product of three tiles.
template <typename T>
void run_tiled(const std::vector<TiledGemm<T> >& gemms,
               const std::vector<std::function<void()> >& extra = {}) {
  std::vector<std::pair<int64_t, int64_t> > work;  // (gemm, tile); gemm -1: extra[tile]
  int64_t macs = 0;
  for (size_t g = 0; g < gemms.size(); ++g) {
    for (int64_t t = 0; t < gemms[g].tiles(); ++t) work.emplace_back(static_cast<int64_t>(g), t);
    macs += gemms[g].d.m * gemms[g].d.n * gemms[g].d.k;
  }
  for (size_t i = 0; i < extra.size(); ++i) work.emplace_back(-1, static_cast<int64_t>(i));
  const int64_t items = static_cast<int64_t>(work.size());
#pragma omp parallel for schedule( \
    dynamic, 1) if (items > 1 && (macs > (int64_t{1} << 20) || !extra.empty()))
  for (int64_t i = 0; i < items; ++i) {
    const auto [g, t] = work[static_cast<size_t>(i)];
    if (g < 0)
      extra[static_cast<size_t>(t)]();
    else
      gemms[static_cast<size_t>(g)].run_tile(t);
  }
}

template <typename T>
void gemm_2d(const T* a, bool ta, const T* b, bool tb, T* c, GemmDims d, T alpha, T beta) {
  if (beta != T(0) && beta != T(1)) {
    MatrixMap<T>(c, d.m, d.n) *= beta;
    beta = T(1);
  }
  run_tiled<T>({TiledGemm<T>{a, ta, b, tb, c, d, alpha, beta}});
}

}  // namespace

void matmul(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, double alpha,
            double beta) {
  const GemmDims d{ta ? a.dim(1) : a.dim(0), ta ? a.dim(0) : a.dim(1), c.dim(1)};
  visit_float(a.dtype(), "matmul", [&](auto zero) {
    using T = decltype(zero);
    gemm_2d<T>(a.data<T>(), ta, b.data<T>(), tb, c.data<T>(), d, static_cast<T>(alpha),
               static_cast<T>(beta));
  });
}

void batched_matmul(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c,
                    Epilogue epilogue) {
  const int64_t batch = a.dim(0);
  const GemmDims d{c.dim(1), ta ? a.dim(1) : a.dim(2), c.dim(2)};
  visit_float(a.dtype(), "batched_matmul", [&](auto zero) {
    using T = decltype(zero);
    // Each product is large; its tiles run in parallel.
    for (int64_t i = 0; i < batch; ++i)
      gemm_2d<T>(a.data<T>() + i * d.m * d.k, ta, b.data<T>() + i * d.k * d.n, tb,
                 c.data<T>() + i * d.m * d.n, d, T(1), T(0));
    if (epilogue == Epilogue::kRelu) {
      T* p = c.data<T>();
      for (int64_t i = 0; i < c.numel(); ++i) p[i] = std::max(p[i], T(0));
    }
  });
  if (epilogue == Epilogue::kGelu) c.copy_from(cpu::gelu(c));
}

// At most this many rows, a group's GEMM streams the weight once instead of packing it
// (Eigen's GEMM repacks the whole weight: ~3x the memory traffic for a handful of rows).
constexpr int64_t kFewRows = 16;

// c [m, n] = a [m, k] @ op(b), m <= kFewRows: every weight row read once, the few rows of
// a and c staying in cache.
template <typename T>
void few_rows_matmul(const T* a, const T* b, bool tb, T* c, int64_t m, int64_t k, int64_t n) {
  ConstMatrixMap<T> A(a, m, k);
  MatrixMap<T> C(c, m, n);
  if (tb) {  // b [n, k]: one dot product per output element, b row by row
    ConstMatrixMap<T> B(b, n, k);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < m; ++i) C(i, j) = A.row(i).dot(B.row(j));
  } else {  // b [k, n]: c += a[:, kk] b[kk, :], b row by row
    ConstMatrixMap<T> B(b, k, n);
    C.setZero();
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t i = 0; i < m; ++i) C.row(i) += A(i, kk) * B.row(kk);
  }
}

// dw [n, k] += dy [m, n]^T @ x [m, k], m <= kFewRows: each row of dw read and written once.
template <typename T>
void few_rows_weight_gradient(const T* dy, const T* x, T* dw, int64_t m, int64_t n, int64_t k) {
  ConstMatrixMap<T> DY(dy, m, n), X(x, m, k);
  MatrixMap<T> DW(dw, n, k);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < m; ++i) DW.row(j) += DY(i, j) * X.row(i);
}

void grouped_matmul(const Tensor& a, const Tensor& b, bool tb, Tensor& c,
                    const std::vector<int64_t>& offsets) {
  const int64_t groups = b.dim(0);
  const GemmDims d{a.dim(0), a.dim(1), c.dim(1)};
  visit_float(a.dtype(), "grouped_matmul", [&](auto zero) {
    using T = decltype(zero);
    // The groups' tiles run as one parallel list; a group of a few rows is one item.
    std::vector<TiledGemm<T> > gemms;
    std::vector<std::function<void()> > few;
    for (int64_t g = 0; g < groups; ++g) {
      GemmDims dg = d;
      dg.m = offsets[g + 1] - offsets[g];
      const T* ag = a.data<T>() + offsets[g] * d.k;
      const T* bg = b.data<T>() + g * d.k * d.n;
      T* cg = c.data<T>() + offsets[g] * d.n;
      if (dg.m > 0 && dg.m <= kFewRows)
        few.push_back([=] { few_rows_matmul(ag, bg, tb, cg, dg.m, d.k, d.n); });
      else
        gemms.push_back(TiledGemm<T>{ag, false, bg, tb, cg, dg, T(1), T(0)});
    }
    run_tiled(gemms, few);
  });
}

void grouped_weight_gradient(const Tensor& dy, const Tensor& x, const std::vector<int64_t>& offsets,
                             Tensor& dw) {
  const int64_t groups = dw.dim(0), n = dw.dim(1), k = dw.dim(2);
  visit_float(dw.dtype(), "grouped_weight_gradient", [&](auto zero) {
    using T = decltype(zero);
    std::vector<TiledGemm<T> > gemms;
    std::vector<std::function<void()> > few;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t rows = offsets[g + 1] - offsets[g];
      if (rows == 0) continue;
      const T* dyg = dy.data<T>() + offsets[g] * n;
      const T* xg = x.data<T>() + offsets[g] * k;
      T* dwg = dw.data<T>() + g * n * k;
      if (rows <= kFewRows)
        few.push_back([=] { few_rows_weight_gradient(dyg, xg, dwg, rows, n, k); });
      else
        gemms.push_back(TiledGemm<T>{dyg, true, xg, false, dwg, GemmDims{n, rows, k}, T(1), T(1)});
    }
    run_tiled(gemms, few);
  });
}

}  // namespace sw::ops::cpu
