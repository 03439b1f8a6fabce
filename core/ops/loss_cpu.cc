#include <vector>

#include "core/ops/dispatch.h"

#ifdef SW_WITH_CUDA
#include "kernels/transformer.cuh"
#endif
#include "core/ops/loss.h"

namespace sw::ops {

CrossEntropy cross_entropy(const Tensor& logits, const Tensor& labels_in, int32_t ignore_index) {
  const Tensor labels = labels_in.device().is_cpu() ? labels_in : labels_in.to(Device::cpu());
  SW_CHECK_ARG(logits.ndim() == 2, "cross_entropy: logits must be [N, V], got ", logits.str());
  const int64_t n = logits.dim(0), vocab = logits.dim(1);
  check_shape(labels, {n}, "cross_entropy: labels");
  check_dtype(labels, DType::i32, "cross_entropy: labels");
  const int32_t* pl = labels.data<int32_t>();
  for (int64_t i = 0; i < n; ++i)
    SW_CHECK(pl[i] == ignore_index || (pl[i] >= 0 && pl[i] < vocab), Status::kOutOfRange,
             "cross_entropy: label ", pl[i], " at position ", i, " is outside [0, ", vocab,
             ") and is not the ignore index ", ignore_index);
  CrossEntropy result;
#ifdef SW_WITH_CUDA
  if (on_cuda(logits)) {
    // Per-row losses on the device, then the same serial sum as on the cpu.
    const Tensor rows =
        kernels::cross_entropy_rows(logits, labels_in.to(logits.device()), ignore_index)
            .to(Device::cpu());
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      if (pl[i] == ignore_index) continue;
      total += rows.data<float>()[i];
      ++result.count;
    }
    result.loss = result.count ? total / static_cast<double>(result.count) : 0.0;
    return result;
  }
#endif
  require_cpu(logits, "cross_entropy");
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto zero) {
    using T = decltype(zero);
    const T* px = logits.data<T>();
    // Per-row losses, then a serial sum: the result does not depend on the thread count.
    std::vector<double> row_loss(n, 0.0);
#pragma omp parallel for if (n * vocab > 65536)
    for (int64_t i = 0; i < n; ++i) {
      if (pl[i] == ignore_index) continue;
      const T* row = px + i * vocab;
      row_loss[i] = logsumexp_row<double>(row, vocab) - static_cast<double>(row[pl[i]]);
    }
    double total = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (pl[i] == ignore_index) continue;
      total += row_loss[i];
      ++count;
    }
    result.count = count;
    result.loss = count ? total / static_cast<double>(count) : 0.0;
  });
  return result;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double scale,
                              int32_t ignore_index) {
  require_cpu(logits, "cross_entropy backward");
  SW_CHECK_ARG(logits.ndim() == 2, "cross_entropy backward: logits must be [N, V], got ",
               logits.str());
  const int64_t n = logits.dim(0), vocab = logits.dim(1);
  check_shape(labels, {n}, "cross_entropy backward: labels");
  const int32_t* pl = labels.data<int32_t>();
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    SW_CHECK(pl[i] == ignore_index || (pl[i] >= 0 && pl[i] < vocab), Status::kOutOfRange,
             "cross_entropy backward: label ", pl[i], " at position ", i, " is outside [0, ", vocab,
             ")");
    count += pl[i] != ignore_index;
  }
  Tensor grad = Tensor::zeros({n, vocab}, logits.dtype());
  if (count == 0) return grad;
  dispatch_float(logits.dtype(), "cross_entropy backward", [&](auto zero) {
    using T = decltype(zero);
    const T* px = logits.data<T>();
    T* pg = grad.data<T>();
    const T factor = static_cast<T>(scale / static_cast<double>(count));
#pragma omp parallel for if (n * vocab > 65536)
    for (int64_t i = 0; i < n; ++i) {
      if (pl[i] == ignore_index) continue;
      std::copy(px + i * vocab, px + (i + 1) * vocab, pg + i * vocab);
      softmax_row(pg + i * vocab, vocab);
      pg[i * vocab + pl[i]] -= T(1);
      for (int64_t j = 0; j < vocab; ++j) pg[i * vocab + j] *= factor;
    }
  });
  return grad;
}

}  // namespace sw::ops
