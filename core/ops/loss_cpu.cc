#include <algorithm>

#include "core/ops/cpu_util.h"
#include "core/ops/loss.h"

namespace sw::ops::cpu {

Tensor cross_entropy_rows(const Tensor& logits, const Tensor& labels, int32_t ignore_index) {
  const int64_t n = logits.dim(0), vocab = logits.dim(1);
  Tensor row_loss = Tensor::zeros({n}, DType::f64);
  const int32_t* pl = labels.data<int32_t>();
  double* out = row_loss.data<double>();
  visit_float(logits.dtype(), "cross_entropy", [&](auto zero) {
    using T = decltype(zero);
    const T* px = logits.data<T>();
#pragma omp parallel for if (n * vocab > 65536)
    for (int64_t i = 0; i < n; ++i) {
      if (pl[i] == ignore_index) continue;
      const T* row = px + i * vocab;
      out[i] = logsumexp_row<double>(row, vocab) - static_cast<double>(row[pl[i]]);
    }
  });
  return row_loss;
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double scale,
                              int32_t ignore_index) {
  require_cpu(labels, "cross_entropy backward");
  const int64_t n = logits.dim(0), vocab = logits.dim(1);
  const int32_t* pl = labels.data<int32_t>();
  const int64_t count = std::count_if(pl, pl + n, [&](int32_t l) { return l != ignore_index; });
  Tensor grad = Tensor::zeros({n, vocab}, logits.dtype());
  if (count == 0) return grad;
  visit_float(logits.dtype(), "cross_entropy backward", [&](auto zero) {
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

Tensor distillation_cross_entropy_rows(const Tensor& logits, const Tensor& labels,
                                       const Tensor& teacher_probs, double teacher_weight,
                                       int32_t ignore_index) {
  const int64_t n = logits.dim(0), vocab = logits.dim(1);
  Tensor row_loss = Tensor::zeros({n}, DType::f64);
  const int32_t* pl = labels.data<int32_t>();
  double* out = row_loss.data<double>();
  const double w = teacher_weight;
  visit_float(logits.dtype(), "distillation_cross_entropy", [&](auto zero) {
    using T = decltype(zero);
    const T* px = logits.data<T>();
    const T* pq = teacher_probs.data<T>();
#pragma omp parallel for if (n * vocab > 65536)
    for (int64_t i = 0; i < n; ++i) {
      if (pl[i] == ignore_index) continue;
      const T* row = px + i * vocab;
      const T* q = pq + i * vocab;
      const double lse = logsumexp_row<double>(row, vocab);
      double soft = 0.0;  // -sum_v q_v log p_v
      for (int64_t v = 0; v < vocab; ++v)
        soft += static_cast<double>(q[v]) * (lse - static_cast<double>(row[v]));
      out[i] = (1 - w) * (lse - static_cast<double>(row[pl[i]])) + w * soft;
    }
  });
  return row_loss;
}

Tensor distillation_cross_entropy_backward(const Tensor& logits, const Tensor& labels,
                                           const Tensor& teacher_probs, double teacher_weight,
                                           double scale, int32_t ignore_index) {
  const int64_t n = logits.dim(0), vocab = logits.dim(1);
  const int32_t* pl = labels.data<int32_t>();
  const int64_t count = std::count_if(pl, pl + n, [&](int32_t l) { return l != ignore_index; });
  Tensor grad = Tensor::zeros({n, vocab}, logits.dtype());
  if (count == 0) return grad;
  visit_float(logits.dtype(), "distillation_cross_entropy backward", [&](auto zero) {
    using T = decltype(zero);
    const T* px = logits.data<T>();
    const T* pq = teacher_probs.data<T>();
    T* pg = grad.data<T>();
    const T factor = static_cast<T>(scale / static_cast<double>(count));
    const T w = static_cast<T>(teacher_weight);
#pragma omp parallel for if (n * vocab > 65536)
    for (int64_t i = 0; i < n; ++i) {
      if (pl[i] == ignore_index) continue;
      T* g = pg + i * vocab;
      std::copy(px + i * vocab, px + (i + 1) * vocab, g);
      softmax_row(g, vocab);
      for (int64_t v = 0; v < vocab; ++v) g[v] -= w * pq[i * vocab + v];
      g[pl[i]] -= T(1) - w;
      for (int64_t v = 0; v < vocab; ++v) g[v] *= factor;
    }
  });
  return grad;
}

}  // namespace sw::ops::cpu
