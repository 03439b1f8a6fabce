#include <cmath>

#include "kernels/adafactor.cuh"
#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/reduce.cuh"

namespace sw::kernels {
namespace {

// One block per (matrix b, row r): the row's sum of g^2 + eps1 over its columns.
__global__ void adafactor_row_sums_kernel(const float* g, double* row_sums, int64_t cols,
                                          double eps1) {
  const int64_t br = blockIdx.x;
  const float* gr = g + br * cols;
  double sum = 0.0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    sum += static_cast<double>(gr[c]) * gr[c] + eps1;
  sum = block_sum_f64(sum);
  if (threadIdx.x == 0) row_sums[br] = sum;
}

// One thread per (matrix b, column c): the column's sum over its rows, in row order.
__global__ void adafactor_col_sums_kernel(const float* g, double* col_sums, int64_t batch,
                                          int64_t rows, int64_t cols, double eps1) {
  const int64_t bc = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (bc >= batch * cols) return;
  const int64_t b = bc / cols, c = bc % cols;
  const float* gb = g + b * rows * cols;
  double sum = 0.0;
  for (int64_t r = 0; r < rows; ++r)
    sum += static_cast<double>(gb[r * cols + c]) * gb[r * cols + c] + eps1;
  col_sums[bc] = sum;
}

// The decayed second moment from a sum over `count` elements: m = beta2 m + (1 - beta2) mean.
__global__ void adafactor_moment_kernel(const double* sums, float* moment, int64_t n, double count,
                                        double beta2) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) moment[i] = static_cast<float>(beta2 * moment[i] + (1 - beta2) * (sums[i] / count));
}

// One thread per matrix b: the mean of its row moments over all_rows rows (added in row
// order); a model-parallel part adds its rows' share.
__global__ void adafactor_row_mean_kernel(const float* row, double* mean, int64_t batch,
                                          int64_t rows, double all_rows) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  double sum = 0.0;
  for (int64_t r = 0; r < rows; ++r) sum += static_cast<double>(row[b * rows + r]) / all_rows;
  mean[b] = sum;
}

// One block per matrix b: row_scale[b, r] = row[b, r] / mean[b].
__global__ void adafactor_row_scale_kernel(const float* row, const double* mean, double* row_scale,
                                           int64_t rows) {
  const int64_t b = blockIdx.x;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x)
    row_scale[b * rows + r] = row[b * rows + r] / mean[b];
}

__global__ void adafactor_v_kernel(const float* g, float* v, int64_t n, double eps1, double beta2) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n)
    v[i] =
        static_cast<float>(beta2 * v[i] + (1 - beta2) * (static_cast<double>(g[i]) * g[i] + eps1));
}

// The unclipped update g / sqrt(v_hat), v_hat = row_scale[r] * col[c] (factored) or v.
struct Unclipped {
  const float* g;
  const float* v;           // not factored
  const double* row_scale;  // factored: [batch * rows]
  const float* col;         // factored: [batch * cols]
  int64_t rows, cols;
  __device__ double operator()(int64_t i) const {
    if (v) return g[i] / sqrt(static_cast<double>(v[i]));
    const int64_t c = i % cols, br = i / cols, b = br / rows;
    return g[i] / sqrt(row_scale[br] * static_cast<double>(col[b * cols + c]));
  }
};

struct UnclippedSquare {
  Unclipped u;
  __device__ double operator()(int64_t i) const {
    const double x = u(i);
    return x * x;
  }
};

// sums[0]: the parameter's sum of squares (with parameter scaling), sums[1]: the update's,
// both over `count` elements (the whole tensor's, for a model-parallel part).
__global__ void adafactor_step_kernel(float* p, float* m, Unclipped unclipped, const double* sums,
                                      int64_t n, double count, double lr, double eps2,
                                      bool parameter_scale, double clip_threshold, double beta1,
                                      double weight_decay) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const double rate = parameter_scale ? lr * fmax(eps2, sqrt(sums[0] / count)) : lr;
  const double shrink = fmax(1.0, sqrt(sums[1] / count) / clip_threshold);
  double u = unclipped(i) / shrink;
  if (m) u = m[i] = static_cast<float>(beta1 * m[i] + (1 - beta1) * u);
  p[i] = static_cast<float>(p[i] - rate * weight_decay * p[i] - rate * u);
}

}  // namespace

void adafactor_update(Tensor& parameter, const Tensor& gradient, AdafactorState& s,
                      const AdafactorOptions& o, double lr, double beta2,
                      const AdafactorSplit& split) {
  const int64_t n = parameter.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(parameter);
  const Device device = parameter.device();
  const float* g = static_cast<const float*>(gradient.raw());
  float* p = static_cast<float*>(parameter.raw());
  const bool split_rows = split.sum && split.split_rows, split_cols = split.sum && split.split_cols;
  // Sums over every part of a split parameter, in place (device f64).
  auto sum_over_parts = [&](Tensor t) {
    if (split.sum) split.sum(t);
  };
  // sums[0], sums[1] and the partial sums of each behind them.
  const int64_t chunks = chunks_for(n);
  Tensor scratch = Tensor::zeros({2 + 2 * chunks}, DType::f64, device);
  double* sums = static_cast<double*>(scratch.raw());
  if (o.multiply_by_parameter_scale) {
    chunk_sums_kernel<<<chunks, kThreads, 0, ctx.stream>>>(SquareOf<float>{p}, n, sums + 2);
    SW_CUDA_CHECK_LAUNCH("chunk_sums (adafactor parameter scale)");
    add_in_order(sums + 2, chunks, sums, ctx.stream);
    sum_over_parts(scratch.slice(0, 1));
  }
  Unclipped unclipped{g, nullptr, nullptr, nullptr, 1, n};
  Tensor row_scale;
  if (s.row.defined()) {
    const int64_t cols = parameter.dim(-1), rows = parameter.dim(-2), batch = n / (rows * cols);
    const double all_cols = static_cast<double>(cols) * (split_cols ? split.parts : 1);
    const double all_rows = static_cast<double>(rows) * (split_rows ? split.parts : 1);
    Tensor row_sums = Tensor::empty({batch * rows}, DType::f64, device);
    Tensor col_sums = Tensor::empty({batch * cols}, DType::f64, device);
    adafactor_row_sums_kernel<<<static_cast<unsigned>(batch * rows), kThreads, 0, ctx.stream>>>(
        g, static_cast<double*>(row_sums.raw()), cols, o.eps1);
    SW_CUDA_CHECK_LAUNCH("adafactor_row_sums");
    adafactor_col_sums_kernel<<<blocks_for(batch * cols), kThreads, 0, ctx.stream>>>(
        g, static_cast<double*>(col_sums.raw()), batch, rows, cols, o.eps1);
    SW_CUDA_CHECK_LAUNCH("adafactor_col_sums");
    if (split_cols) sum_over_parts(row_sums);  // a row's columns lie on every part
    if (split_rows) sum_over_parts(col_sums);
    adafactor_moment_kernel<<<blocks_for(batch * rows), kThreads, 0, ctx.stream>>>(
        static_cast<const double*>(row_sums.raw()), static_cast<float*>(s.row.raw()), batch * rows,
        all_cols, beta2);
    SW_CUDA_CHECK_LAUNCH("adafactor_moment (rows)");
    adafactor_moment_kernel<<<blocks_for(batch * cols), kThreads, 0, ctx.stream>>>(
        static_cast<const double*>(col_sums.raw()), static_cast<float*>(s.col.raw()), batch * cols,
        all_rows, beta2);
    SW_CUDA_CHECK_LAUNCH("adafactor_moment (columns)");
    Tensor row_mean = Tensor::empty({batch}, DType::f64, device);
    adafactor_row_mean_kernel<<<blocks_for(batch), kThreads, 0, ctx.stream>>>(
        static_cast<const float*>(s.row.raw()), static_cast<double*>(row_mean.raw()), batch, rows,
        all_rows);
    SW_CUDA_CHECK_LAUNCH("adafactor_row_mean");
    if (split_rows) sum_over_parts(row_mean);
    row_scale = Tensor::empty({batch * rows}, DType::f64, device);
    adafactor_row_scale_kernel<<<static_cast<unsigned>(batch), kThreads, 0, ctx.stream>>>(
        static_cast<const float*>(s.row.raw()), static_cast<const double*>(row_mean.raw()),
        static_cast<double*>(row_scale.raw()), rows);
    SW_CUDA_CHECK_LAUNCH("adafactor_row_scale");
    unclipped = {g,
                 nullptr,
                 static_cast<const double*>(row_scale.raw()),
                 static_cast<const float*>(s.col.raw()),
                 rows,
                 cols};
  } else {
    adafactor_v_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
        g, static_cast<float*>(s.v.raw()), n, o.eps1, beta2);
    SW_CUDA_CHECK_LAUNCH("adafactor_v");
    unclipped.v = static_cast<const float*>(s.v.raw());
  }
  chunk_sums_kernel<<<chunks, kThreads, 0, ctx.stream>>>(UnclippedSquare{unclipped}, n,
                                                         sums + 2 + chunks);
  SW_CUDA_CHECK_LAUNCH("chunk_sums (adafactor update rms)");
  add_in_order(sums + 2 + chunks, chunks, sums + 1, ctx.stream);
  sum_over_parts(scratch.slice(1, 2));
  const double count = static_cast<double>(n) * (split.sum ? split.parts : 1);
  adafactor_step_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
      p, s.m.defined() ? static_cast<float*>(s.m.raw()) : nullptr, unclipped, sums, n, count, lr,
      o.eps2, o.multiply_by_parameter_scale, o.clip_threshold, o.beta1, o.weight_decay);
  SW_CUDA_CHECK_LAUNCH("adafactor_step");
}

}  // namespace sw::kernels
