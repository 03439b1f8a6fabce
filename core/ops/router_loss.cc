#include "core/ops/router_loss.h"

#include <algorithm>
#include <cmath>

#include "core/ops/cpu_util.h"
#include "core/ops/softmax.h"

namespace sw::ops {

BalanceSums::BalanceSums(int64_t num_groups, int64_t num_experts)
    : groups_(num_groups), experts_(num_experts) {
  SW_CHECK_ARG(num_groups >= 1 && num_experts >= 1,
               "load_balancing_loss: need at least one group and one expert, got ", num_groups,
               " and ", num_experts);
  counts_.assign(num_groups * num_experts, 0.0);
  prob_sums_.assign(num_groups * num_experts, 0.0);
  tokens_.assign(num_groups, 0.0);
}

void BalanceSums::add(const Tensor& probs_in, const Tensor& assigned_in) {
  const Tensor probs = probs_in.to(Device::cpu()), assigned = assigned_in.to(Device::cpu());
  SW_CHECK_ARG(probs.ndim() == 2 && probs.dim(1) == experts_, "load_balancing_loss: probs ",
               probs.str(), " does not have ", experts_, " experts");
  const int64_t n = probs.dim(0);
  SW_CHECK_ARG((assigned.ndim() == 1 && assigned.dim(0) == n) ||
                   (assigned.ndim() == 2 && assigned.dim(0) == n && assigned.dim(1) >= 1),
               "load_balancing_loss: assigned experts ", assigned.str(), " for ", n, " tokens");
  // A token counts for its first choice (GShard's top-2 loss does the same).
  const int64_t k = assigned.ndim() == 2 ? assigned.dim(1) : 1;
  SW_CHECK_ARG(n % groups_ == 0, "load_balancing_loss: ", n, " tokens do not split into ", groups_,
               " groups");
  check_dtype(assigned, DType::i32, "load_balancing_loss: assigned experts");
  const int64_t per_group = n / groups_;
  const int32_t* idx = assigned.data<int32_t>();
  for (int64_t t = 0; t < n; ++t)
    SW_CHECK(idx[t * k] >= 0 && idx[t * k] < experts_, Status::kOutOfRange,
             "load_balancing_loss: expert ", idx[t * k], " at token ", t, " is outside [0, ",
             experts_, ")");
  visit_float(probs.dtype(), "load_balancing_loss", [&](auto zero) {
    using T = decltype(zero);
    const T* p = probs.data<T>();
    for (int64_t t = 0; t < n; ++t) {
      const int64_t g = t / per_group;
      counts_[g * experts_ + idx[t * k]] += 1.0;
      for (int64_t e = 0; e < experts_; ++e) prob_sums_[g * experts_ + e] += p[t * experts_ + e];
      tokens_[g] += 1.0;
    }
  });
}

double BalanceSums::loss() const {
  double total = 0.0;
  for (int64_t g = 0; g < groups_; ++g) {
    if (tokens_[g] == 0) continue;
    double dot = 0.0;
    for (int64_t e = 0; e < experts_; ++e)
      dot += counts_[g * experts_ + e] * prob_sums_[g * experts_ + e];
    total += static_cast<double>(experts_) * dot / (tokens_[g] * tokens_[g]);
  }
  return total / static_cast<double>(groups_);
}

double router_z_loss(const Tensor& logits) {
  const Tensor lse = logsumexp(logits.device().is_cpu() ? logits : logits.to(Device::cpu()));
  const int64_t n = lse.numel();
  if (n == 0) return 0.0;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += lse.item(i) * lse.item(i);
  return sum / static_cast<double>(n);
}

RoutingStats routing_stats(const RouterOutput& router, const CapacityAssignment& a) {
  RouterOutput r;
  r.probs = router.probs.to(Device::cpu());
  r.expert_index = router.expert_index.to(Device::cpu());
  const int64_t n = r.probs.dim(0), experts = r.probs.dim(1);
  const int64_t k = r.expert_index.numel() / std::max<int64_t>(n, 1);
  RoutingStats s;
  s.tokens_per_expert.assign(experts, 0);
  SW_CHECK_ARG(a.num_experts() == experts && a.slot.numel() == n * k,
               "routing_stats: the assignment does not match the router output");
  s.kept_per_expert = a.kept_per_expert;
  s.choices = k;
  const int32_t* idx = r.expert_index.data<int32_t>();
  for (int64_t t = 0; t < n; ++t) ++s.tokens_per_expert[idx[t * k]];
  s.dropped_fraction = n ? static_cast<double>(a.dropped) / static_cast<double>(n * k) : 0.0;
  visit_float(r.probs.dtype(), "routing_stats", [&](auto zero) {
    using T = decltype(zero);
    const T* p = r.probs.data<T>();
    double entropy = 0.0;
    for (int64_t i = 0; i < n * experts; ++i)
      if (p[i] > 0) entropy -= static_cast<double>(p[i]) * std::log(static_cast<double>(p[i]));
    s.router_entropy = n ? entropy / static_cast<double>(n) : 0.0;
  });
  return s;
}

}  // namespace sw::ops
