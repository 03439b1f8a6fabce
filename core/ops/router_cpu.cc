#include <algorithm>
#include <numeric>
#include <vector>

#include "core/ops/cpu_util.h"
#include "core/ops/gemm.h"
#include "core/ops/router.h"
#include "core/ops/softmax.h"
#include "core/ops/storage.h"

namespace sw::ops::cpu {
namespace {

// The jitter noise of element i: U(1 - eps, 1 + eps) from the jitter's stream.
template <typename T>
T jitter_noise(const RouterJitter& jitter, int64_t i) {
  return static_cast<T>(1.0 - jitter.eps + 2.0 * jitter.eps * jitter.stream.uniform(i));
}

}  // namespace

RouterOutput route(const Tensor& x, const Tensor& weight, const RouterJitter& jitter,
                   Tensor* jittered_x, int64_t top_k, bool normalize_gates,
                   const Tensor* choice_bias) {
  require_cpu(weight, "route");
  const int64_t n = x.dim(0), experts = weight.dim(0);
  Tensor input = x;
  if (jitter.active()) {
    input = x.clone();
    visit_float(x.dtype(), "route", [&](auto zero) {
      using T = decltype(zero);
      T* p = input.data<T>();
      const int64_t count = input.numel();
      for (int64_t i = 0; i < count; ++i) p[i] *= jitter_noise<T>(jitter, i);
    });
  }
  if (jitter.active()) stored(input);  // a bf16 router's input is bf16 (core/ops/storage.h)
  if (jittered_x) *jittered_x = input;
  RouterOutput r;
  r.logits = linear(input, weight);  // both stored in bf16 by a bf16 router
  r.probs = softmax(r.logits);
  const int64_t k = top_k;
  r.expert_index = Tensor::empty({n, k}, DType::i32);
  r.gate = Tensor::empty({n, k}, x.dtype());
  r.normalized_gates = normalize_gates && k > 1;
  visit_float(x.dtype(), "route", [&](auto zero) {
    using T = decltype(zero);
    const T* p = r.probs.data<T>();
    int32_t* idx = r.expert_index.data<int32_t>();
    T* gate = r.gate.data<T>();
    std::vector<int32_t> order(static_cast<size_t>(experts));
    std::vector<T> score(static_cast<size_t>(experts));
    const T* bias = choice_bias ? choice_bias->data<T>() : nullptr;
    for (int64_t t = 0; t < n; ++t) {
      const T* row = p + t * experts;
      if (bias) {  // the choice sees p + b; the gates stay p
        for (int64_t e = 0; e < experts; ++e) score[e] = row[e] + bias[e];
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
          return score[a] > score[b] || (score[a] == score[b] && a < b);
        });
        T sum = 0;
        for (int64_t j = 0; j < k; ++j) sum += row[order[j]];
        for (int64_t j = 0; j < k; ++j) {
          idx[t * k + j] = order[j];
          gate[t * k + j] = r.normalized_gates ? row[order[j]] / sum : row[order[j]];
        }
        continue;
      }
      if (k == 1) {
        // max_element returns the first maximum: ties go to the lowest expert index.
        const int64_t best = std::max_element(row, row + experts) - row;
        idx[t] = static_cast<int32_t>(best);
        gate[t] = row[best];
        continue;
      }
      // The k largest, best first; the stable order sends ties to the lowest index.
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
        return row[a] > row[b] || (row[a] == row[b] && a < b);
      });
      T sum = 0;
      for (int64_t j = 0; j < k; ++j) sum += row[order[j]];
      for (int64_t j = 0; j < k; ++j) {
        idx[t * k + j] = order[j];
        gate[t * k + j] = r.normalized_gates ? row[order[j]] / sum : row[order[j]];
      }
    }
  });
  stored(r.gate);  // normalized gates are quotients
  return r;
}

Tensor router_backward(const RouterOutput& r, const Tensor& d_gate,
                       const RouterLossGradients& losses) {
  require_cpu(d_gate, "router backward");
  const int64_t n = r.probs.dim(0), experts = r.num_experts(), k = r.top_k();
  const int32_t* index = r.expert_index.data<int32_t>();
  Tensor d_probs = Tensor::zeros({n, experts}, r.probs.dtype());
  visit_float(r.probs.dtype(), "router backward", [&](auto zero) {
    using T = decltype(zero);
    const T* dg = d_gate.data<T>();
    T* dp = d_probs.data<T>();
    // gate[t, j] = probs[t, index[t, j]], or normalized: p_j / S with S the sum of the
    // chosen probabilities, so dL/dp_m = dg_m / S - (sum_j dg_j p_j) / S^2.
    const T* p = r.probs.data<T>();
    for (int64_t t = 0; t < n; ++t) {
      if (!r.normalized_gates) {
        for (int64_t j = 0; j < k; ++j) dp[t * experts + index[t * k + j]] += dg[t * k + j];
        continue;
      }
      T sum = 0, weighted = 0;
      for (int64_t j = 0; j < k; ++j) {
        const T pj = p[t * experts + index[t * k + j]];
        sum += pj;
        weighted += dg[t * k + j] * pj;
      }
      for (int64_t j = 0; j < k; ++j)
        dp[t * experts + index[t * k + j]] += dg[t * k + j] / sum - weighted / (sum * sum);
    }
    // Load balancing per group: E * mean_g sum_i f_gi P_gi with P_gi the group's mean
    // probability, so dL/dp_ti = E * f_gi / (n_g * G); f (the argmax counts) is constant.
    if (losses.aux != 0) {
      const int64_t group = losses.group_size, groups = n / group;
      for (int64_t g0 = 0; g0 < groups; ++g0) {
        std::vector<double> f(experts, 0.0);
        for (int64_t t = g0 * group; t < (g0 + 1) * group; ++t) f[index[t * k]] += 1.0 / group;
        for (int64_t t = g0 * group; t < (g0 + 1) * group; ++t)
          for (int64_t e = 0; e < experts; ++e)
            dp[t * experts + e] += static_cast<T>(losses.aux * experts * f[e] / (group * groups));
      }
    }
  });
  Tensor d_logits = softmax_backward(d_probs, r.probs);
  // z-loss mean_t lse_t^2: its gradient is 2 lse_t p_t / N.
  if (losses.z != 0) {
    const Tensor lse = logsumexp(r.logits);
    visit_float(r.probs.dtype(), "router backward", [&](auto zero) {
      using T = decltype(zero);
      T* dl = d_logits.data<T>();
      const T* p = r.probs.data<T>();
      for (int64_t t = 0; t < n; ++t)
        for (int64_t e = 0; e < experts; ++e)
          dl[t * experts + e] +=
              static_cast<T>(losses.z * 2.0 * lse.item(t) / n) * p[t * experts + e];
    });
  }
  return d_logits;
}

void jitter_backward_(Tensor& d_input, const RouterJitter& jitter) {
  visit_float(d_input.dtype(), "router jitter backward", [&](auto zero) {
    using T = decltype(zero);
    T* g = d_input.data<T>();
    for (int64_t i = 0; i < d_input.numel(); ++i) g[i] *= jitter_noise<T>(jitter, i);
  });
}

}  // namespace sw::ops::cpu
