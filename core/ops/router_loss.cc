#include "core/ops/router_loss.h"

#include <algorithm>
#include <cmath>

#include "core/ops/cpu_util.h"
#include "core/ops/softmax.h"
#include "core/tensor/device_switch.h"
#include "kernels/router_loss.cuh"

namespace sw::ops {

namespace {

// The device's per-group sums (kernels/router_loss.cu); a GPU tensor implies a CUDA build.
kernels::GroupSums device_group_sums([[maybe_unused]] const Tensor& probs,
                                     [[maybe_unused]] const Tensor& assigned,
                                     [[maybe_unused]] int64_t groups) {
  SW_RUN_ON_CUDA(kernels::group_sums(probs, assigned, groups));
}

// How many equal chunks of about 512 tokens `tokens` splits into (a divisor of it): the
// device sums one chunk per block.
int64_t chunks_of(int64_t tokens) {
  int64_t chunks = std::max<int64_t>(1, tokens / 512);
  while (tokens % chunks) --chunks;
  return chunks;
}

// The assignments `a` dropped, from its kept counts as the caller read them (once).
int64_t dropped(const CapacityAssignment& a, const std::vector<int64_t>& kept) {
  if (!a.device_kept.defined()) return a.dropped;
  int64_t total = 0;
  for (int64_t k : kept) total += k;
  return a.slot.numel() - total;
}

double device_sum_of_squared_logsumexp([[maybe_unused]] const Tensor& logits) {
  SW_RUN_ON_CUDA(kernels::sum_of_squared_logsumexp(logits));
}

}  // namespace

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
  SW_CHECK_ARG(probs_in.ndim() == 2 && probs_in.dim(1) == experts_, "load_balancing_loss: probs ",
               probs_in.str(), " does not have ", experts_, " experts");
  const int64_t n = probs_in.dim(0);
  SW_CHECK_ARG((assigned_in.ndim() == 1 && assigned_in.dim(0) == n) ||
                   (assigned_in.ndim() == 2 && assigned_in.dim(0) == n && assigned_in.dim(1) >= 1),
               "load_balancing_loss: assigned experts ", assigned_in.str(), " for ", n, " tokens");
  SW_CHECK_ARG(n % groups_ == 0, "load_balancing_loss: ", n, " tokens do not split into ", groups_,
               " groups");
  check_dtype(assigned_in, DType::i32, "load_balancing_loss: assigned experts");
  const int64_t per_group = n / groups_;
  if (on_cuda(probs_in) && n > 0) {
    // Summed on the device: [groups, experts] sums cross to the host, not [N, E]
    // probabilities (the router's kernels write only experts in range; the HF modes'
    // post-capacity experts come from the host). A long group is summed in chunks.
    const Tensor assigned =
        assigned_in.device() == probs_in.device() ? assigned_in : assigned_in.to(probs_in.device());
    const int64_t chunks = groups_ * chunks_of(per_group);
    const kernels::GroupSums sums = device_group_sums(probs_in, assigned, chunks);
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t e = 0; e < experts_; ++e) {
        const int64_t g = c / (chunks / groups_);
        counts_[g * experts_ + e] += sums.counts[c * experts_ + e];
        prob_sums_[g * experts_ + e] += sums.prob_sums[c * experts_ + e];
      }
    for (int64_t g = 0; g < groups_; ++g) tokens_[g] += static_cast<double>(per_group);
    return;
  }
  const Tensor probs = probs_in.to(Device::cpu()), assigned = assigned_in.to(Device::cpu());
  // A token counts for its first choice (GShard's top-2 loss does the same).
  const int64_t k = assigned.ndim() == 2 ? assigned.dim(1) : 1;
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
  if (on_cuda(logits) && logits.numel() > 0) {
    SW_CHECK_ARG(logits.ndim() == 2, "router_z_loss: logits must be [N, E], got ", logits.str());
    const int64_t n = logits.dim(0);
    return device_sum_of_squared_logsumexp(logits) / static_cast<double>(n);
  }
  const Tensor lse = logsumexp(logits);
  const int64_t n = lse.numel();
  if (n == 0) return 0.0;
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += lse.item(i) * lse.item(i);
  return sum / static_cast<double>(n);
}

RoutingStats routing_stats(const RouterOutput& router, const CapacityAssignment& a) {
  if (on_cuda(router.probs) && router.probs.dim(0) > 0) {
    // On the device: per-chunk sums, then their totals here ([chunks, E], not [N, E]).
    const int64_t n = router.probs.dim(0), experts = router.probs.dim(1);
    const int64_t k = router.expert_index.numel() / n;
    SW_CHECK_ARG(a.num_experts() == experts && a.slot.numel() == n * k,
                 "routing_stats: the assignment does not match the router output");
    const int64_t chunks = chunks_of(n);
    const kernels::GroupSums sums = device_group_sums(router.probs, router.expert_index, chunks);
    RoutingStats s;
    s.tokens_per_expert.assign(experts, 0);
    for (int64_t c = 0; c < chunks; ++c)
      for (int64_t e = 0; e < experts; ++e)
        s.tokens_per_expert[e] += static_cast<int64_t>(sums.counts[c * experts + e]);
    s.kept_per_expert = a.kept_counts();
    s.choices = k;
    s.dropped_fraction =
        static_cast<double>(dropped(a, s.kept_per_expert)) / static_cast<double>(n * k);
    double entropy = 0;
    for (double v : sums.entropy) entropy += v;
    s.router_entropy = entropy / static_cast<double>(n);
    return s;
  }
  RouterOutput r;
  r.probs = router.probs.to(Device::cpu());
  r.expert_index = router.expert_index.to(Device::cpu());
  const int64_t n = r.probs.dim(0), experts = r.probs.dim(1);
  const int64_t k = r.expert_index.numel() / std::max<int64_t>(n, 1);
  RoutingStats s;
  s.tokens_per_expert.assign(experts, 0);
  SW_CHECK_ARG(a.num_experts() == experts && a.slot.numel() == n * k,
               "routing_stats: the assignment does not match the router output");
  s.kept_per_expert = a.kept_counts();
  s.choices = k;
  const int32_t* idx = r.expert_index.data<int32_t>();
  for (int64_t t = 0; t < n; ++t) ++s.tokens_per_expert[idx[t * k]];
  s.dropped_fraction =
      n ? static_cast<double>(dropped(a, s.kept_per_expert)) / static_cast<double>(n * k) : 0.0;
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
