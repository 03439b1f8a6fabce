#include <cmath>
#include <exception>
#include <limits>

#include "core/ops/attention.h"
#include "core/ops/cpu_util.h"

namespace sw::ops::cpu {

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 const AttentionInputs& in, Tensor* probs) {
  for (const Tensor* t : {&k, &v}) require_cpu(*t, "attention");
  const int64_t B = q.dim(0), Tq = q.dim(1), inner = q.dim(2), dk = inner / heads;
  // A decoding cache holds `capacity` positions per sequence, the first Tk of them keys.
  const int64_t capacity = k.dim(1), Tk = in.key_length == -1 ? capacity : in.key_length;
  Tensor out = Tensor::empty({B, Tq, inner}, q.dtype());
  if (probs) *probs = Tensor::empty({B, heads, Tq, Tk}, q.dtype());
  visit_float(q.dtype(), "attention", [&](auto zero) {
    using T = decltype(zero);
    using Strided = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
    using StridedOut = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;
    const T masked = static_cast<T>(std::numeric_limits<float>::lowest());
    const T keep_scale = static_cast<T>(1.0 / (1.0 - in.dropout.rate));
    const int32_t* key_mask = in.key_mask ? in.key_mask->data<int32_t>() : nullptr;
    const T* bias = in.bias ? in.bias->data<T>() : nullptr;
    const T* pq = q.data<T>();
    const T* pk = k.data<T>();
    const T* pv = v.data<T>();
    T* po = out.data<T>();
    T* pprobs = probs ? probs->data<T>() : nullptr;
    // Exceptions must not leave an OpenMP region: the first one is kept and rethrown.
    std::exception_ptr failure;
#pragma omp parallel for collapse(2) if (B * heads > 1 && B * heads * Tq * Tk * dk > 32768)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < heads; ++h) {
        try {
          Strided Q(pq + b * Tq * inner + h * dk, Tq, dk, Eigen::OuterStride<>(inner));
          Strided K(pk + b * capacity * inner + h * dk, Tk, dk, Eigen::OuterStride<>(inner));
          Strided V(pv + b * capacity * inner + h * dk, Tk, dk, Eigen::OuterStride<>(inner));
          StridedOut O(po + b * Tq * inner + h * dk, Tq, dk, Eigen::OuterStride<>(inner));
          RowMatrix<T> S = Q * K.transpose();
          for (int64_t i = 0; i < Tq; ++i) {
            T* row = S.data() + i * Tk;
            // Branch-free loops that vectorise: the bias, then `masked` where the key is
            // padding or (causal) in the future; adding 0 elsewhere changes no value.
            if (bias) {
              const T* bias_row = bias + (h * Tq + i) * Tk;
              for (int64_t j = 0; j < Tk; ++j) row[j] += bias_row[j];
            }
            if (key_mask || in.causal) {
              const int32_t* keys = key_mask ? key_mask + b * Tk : nullptr;
              for (int64_t j = 0; j < Tk; ++j) {
                const bool is_masked = (keys && keys[j] == 0) || (in.causal && j > i);
                row[j] += is_masked ? masked : T(0);
              }
            }
            softmax_row(row, Tk);
          }
          if (pprobs) std::copy(S.data(), S.data() + Tq * Tk, pprobs + (b * heads + h) * Tq * Tk);
          if (in.dropout.active()) {
            const uint64_t base = static_cast<uint64_t>((b * heads + h) * Tq * Tk);
            in.dropout.for_each_keep(base, Tq * Tk, [&](int64_t e, bool keep) {
              S.data()[e] = keep ? S.data()[e] * keep_scale : T(0);
            });
          }
          O.noalias() = S * V;
        } catch (...) {
#pragma omp critical(sw_attention_failure)
          if (!failure) failure = std::current_exception();
        }
      }
    }
    if (failure) std::rethrow_exception(failure);
  });
  return out;
}

AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& probs, int64_t heads,
                                  const AttentionInputs& in) {
  for (const Tensor* t : {&dout, &k, &v, &probs}) require_cpu(*t, "attention backward");
  const int64_t B = q.dim(0), Tq = q.dim(1), inner = q.dim(2), Tk = k.dim(1), dk = inner / heads;
  AttentionGrads g;
  g.dq = Tensor::empty(q.shape(), q.dtype());
  g.dk = Tensor::empty(k.shape(), k.dtype());
  g.dv = Tensor::empty(v.shape(), v.dtype());
  Tensor ds_all = Tensor::empty({B, heads, Tq, Tk}, q.dtype());  // score gradients
  visit_float(q.dtype(), "attention backward", [&](auto zero) {
    using T = decltype(zero);
    using Strided = Eigen::Map<const RowMatrix<T>, 0, Eigen::OuterStride<>>;
    using StridedOut = Eigen::Map<RowMatrix<T>, 0, Eigen::OuterStride<>>;
    const T keep_scale = static_cast<T>(1.0 / (1.0 - in.dropout.rate));
    const T* pq = q.data<T>();
    const T* pk = k.data<T>();
    const T* pv = v.data<T>();
    const T* pdo = dout.data<T>();
    const T* pp = probs.data<T>();
    std::exception_ptr failure;
#pragma omp parallel for collapse(2) if (B * heads > 1 && B * heads * Tq * Tk * dk > 32768)
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < heads; ++h) {
        try {
          const int64_t base = (b * heads + h) * Tq * Tk;
          Strided Q(pq + b * Tq * inner + h * dk, Tq, dk, Eigen::OuterStride<>(inner));
          Strided K(pk + b * Tk * inner + h * dk, Tk, dk, Eigen::OuterStride<>(inner));
          Strided V(pv + b * Tk * inner + h * dk, Tk, dk, Eigen::OuterStride<>(inner));
          Strided dO(pdo + b * Tq * inner + h * dk, Tq, dk, Eigen::OuterStride<>(inner));
          StridedOut dQ(g.dq.data<T>() + b * Tq * inner + h * dk, Tq, dk,
                        Eigen::OuterStride<>(inner));
          StridedOut dK(g.dk.data<T>() + b * Tk * inner + h * dk, Tk, dk,
                        Eigen::OuterStride<>(inner));
          StridedOut dV(g.dv.data<T>() + b * Tk * inner + h * dk, Tk, dk,
                        Eigen::OuterStride<>(inner));
          Eigen::Map<const RowMatrix<T>> P(pp + base, Tq, Tk);
          // The weights the forward multiplied V by: P with the dropout mask applied.
          RowMatrix<T> mask = RowMatrix<T>::Ones(Tq, Tk);
          if (in.dropout.active())
            in.dropout.for_each_keep(
                static_cast<uint64_t>(base), Tq * Tk,
                [&](int64_t e, bool keep) { mask.data()[e] = keep ? keep_scale : T(0); });
          dV.noalias() = P.cwiseProduct(mask).transpose() * dO;
          RowMatrix<T> dP = (dO * V.transpose()).cwiseProduct(mask);
          Eigen::Map<RowMatrix<T>> dS(ds_all.data<T>() + base, Tq, Tk);
          for (int64_t i = 0; i < Tq; ++i) {
            const T dot = dP.row(i).dot(P.row(i));
            for (int64_t j = 0; j < Tk; ++j) dS(i, j) = P(i, j) * (dP(i, j) - dot);
          }
          dQ.noalias() = dS * K;
          dK.noalias() = dS.transpose() * Q;
        } catch (...) {
#pragma omp critical(sw_attention_backward_failure)
          if (!failure) failure = std::current_exception();
        }
      }
    }
    if (failure) std::rethrow_exception(failure);
    if (in.bias) {
      g.dbias = Tensor::zeros({heads, Tq, Tk}, q.dtype());
      T* db = g.dbias.data<T>();
      const T* ds = ds_all.data<T>();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t e = 0; e < heads * Tq * Tk; ++e) db[e] += ds[b * heads * Tq * Tk + e];
    }
  });
  return g;
}

}  // namespace sw::ops::cpu
