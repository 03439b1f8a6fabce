#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/ops/dispatch.h"
#include "core/ops/gemm.h"
#include "core/ops/routing.h"
#include "core/ops/softmax.h"

#ifdef SW_WITH_CUDA
#include "kernels/gemm.cuh"
#include "kernels/routing.cuh"
#endif

namespace sw::ops {

#ifdef SW_WITH_CUDA
namespace {

// The router in f32 on the GPU, whatever the model's dtype (SPEC §2): one fused pass over
// x up to kFusedRouterMaxExperts experts, an f32 cuBLAS GEMM and a softmax kernel above.
RouterOutput route_cuda(const Tensor& x, const Tensor& weight, const RouterJitter& jitter,
                        Tensor* jittered_x) {
  const int64_t n = x.dim(0), experts = weight.dim(0);
  const Tensor w = weight.dtype() == DType::f32 ? weight : weight.to(DType::f32);
  RouterOutput r;
  r.logits = Tensor::empty({n, experts}, DType::f32, x.device());
  r.probs = Tensor::empty({n, experts}, DType::f32, x.device());
  r.expert_index = Tensor::empty({n}, DType::i32, x.device());
  r.gate = Tensor::empty({n}, DType::f32, x.device());
  if (!jitter.active() && x.dtype() == DType::bf16) {
    // bf16 activations are exact in bf16: f32-precision logits on the tensor cores.
    if (jittered_x) *jittered_x = x;
    kernels::matmul_bf16_by_f32(x, w, r.logits);
    kernels::softmax_top1(r.logits, r.probs, r.expert_index, r.gate);
    return r;
  }
  if (!jitter.active() && experts <= kernels::kFusedRouterMaxExperts) {
    if (jittered_x) *jittered_x = x;
    kernels::fused_router(x, w, r.logits, r.probs, r.expert_index, r.gate);
    return r;
  }
  Tensor input = x.dtype() == DType::f32 ? x : x.to(DType::f32);
  if (jitter.active()) {
    Tensor out = Tensor::empty(input.shape(), DType::f32, input.device());
    kernels::jitter(input, out, jitter.stream, jitter.eps);
    input = out;
  }
  if (jittered_x) *jittered_x = x.dtype() == DType::f32 ? input : input.to(x.dtype());
  if (experts <= kernels::kFusedRouterMaxExperts) {
    kernels::fused_router(input, w, r.logits, r.probs, r.expert_index, r.gate);
  } else {
    matmul(input, false, w, true, r.logits);
    kernels::softmax_top1(r.logits, r.probs, r.expert_index, r.gate);
  }
  return r;
}

}  // namespace
#endif

RouterOutput route(const Tensor& x, const Tensor& weight, const RouterJitter& jitter,
                   Tensor* jittered_x) {
  SW_CHECK_ARG(x.ndim() == 2 && weight.ndim() == 2 && weight.dim(1) == x.dim(1),
               "route: expected x [N, d] and weight [E, d], got ", x.str(), ", ", weight.str());
  const int64_t n = x.dim(0), experts = weight.dim(0);
  SW_CHECK_ARG(experts >= 1, "route: the router weight has no experts: ", weight.str());
  SW_CHECK_ARG(x.device() == weight.device(), "route: x on ", x.device().str(), ", weight on ",
               weight.device().str());
  if (jitter.active()) {
    SW_CHECK_ARG(jitter.eps < 1.0, "route: jitter eps must be in [0, 1), got ", jitter.eps);
    check_stream_size(x.numel(), "router jitter");
  }
#ifdef SW_WITH_CUDA
  if (on_cuda(x)) return route_cuda(x, weight, jitter, jittered_x);
#endif
  require_cpu(x, "route");
  check_dtype(weight, x.dtype(), "route: weight");
  Tensor input = x;
  if (jitter.active()) {
    input = x.clone();
    dispatch_float(x.dtype(), "route", [&](auto zero) {
      using T = decltype(zero);
      T* p = input.data<T>();
      const int64_t count = input.numel();
      for (int64_t i = 0; i < count; ++i)
        p[i] *= static_cast<T>(1.0 - jitter.eps + 2.0 * jitter.eps * jitter.stream.uniform(i));
    });
  }
  if (jittered_x) *jittered_x = input;
  RouterOutput r;
  r.logits = linear(input, weight);
  r.probs = softmax(r.logits);
  r.expert_index = Tensor::empty({n}, DType::i32);
  r.gate = Tensor::empty({n}, x.dtype());
  dispatch_float(x.dtype(), "route", [&](auto zero) {
    using T = decltype(zero);
    const T* p = r.probs.data<T>();
    int32_t* idx = r.expert_index.data<int32_t>();
    T* gate = r.gate.data<T>();
    for (int64_t t = 0; t < n; ++t) {
      const T* row = p + t * experts;
      // max_element returns the first maximum: ties go to the lowest expert index.
      const int64_t best = std::max_element(row, row + experts) - row;
      idx[t] = static_cast<int32_t>(best);
      gate[t] = row[best];
    }
  });
  return r;
}

std::vector<int64_t> CapacityAssignment::token_of_row() const {
  const Tensor rows = row.device().is_cpu() ? row : row.to(Device::cpu());
  std::vector<int64_t> tokens(kept());
  const int32_t* r = rows.data<int32_t>();
  for (int64_t t = 0; t < rows.numel(); ++t)
    if (r[t] >= 0) tokens[r[t]] = t;
  return tokens;
}

int64_t CapacityAssignment::max_kept() const {
  int64_t m = 0;
  for (int64_t k : kept_per_expert) m = std::max(m, k);
  return m;
}

CapacityAssignment CapacityAssignment::padded(const Tensor& expert_index,
                                              int64_t rows_per_expert) const {
  SW_CHECK_ARG(rows_per_expert >= max_kept(), "padded layout: ", rows_per_expert,
               " rows per expert cannot hold ", max_kept(), " kept tokens");
  CapacityAssignment p = *this;
  for (int64_t e = 0; e <= num_experts(); ++e) p.expert_offset[e] = e * rows_per_expert;
#ifdef SW_WITH_CUDA
  if (on_cuda(slot)) {
    p.row = kernels::padded_rows(expert_index, slot, rows_per_expert);
    return p;
  }
#endif
  p.row = Tensor::empty({slot.numel()}, DType::i32);
  const int32_t* s = slot.data<int32_t>();
  const int32_t* idx = expert_index.data<int32_t>();
  int32_t* r = p.row.data<int32_t>();
  for (int64_t t = 0; t < slot.numel(); ++t)
    r[t] = s[t] < 0 ? -1 : static_cast<int32_t>(idx[t] * rows_per_expert + s[t]);
  return p;
}

CapacityAssignment assign_capacity(const Tensor& expert_index, int64_t num_experts,
                                   int64_t group_size, int64_t capacity) {
  check_dtype(expert_index, DType::i32, "assign_capacity: expert_index");
  const int64_t n = expert_index.numel();
  SW_CHECK_ARG(num_experts >= 1, "assign_capacity: num_experts must be >= 1, got ", num_experts);
  SW_CHECK_ARG(group_size >= 1 && n % group_size == 0, "assign_capacity: ", n,
               " tokens do not split into groups of ", group_size);
  SW_CHECK_ARG(capacity >= 0, "assign_capacity: capacity must be >= 0, got ", capacity);
  CapacityAssignment a;
#ifdef SW_WITH_CUDA
  if (on_cuda(expert_index)) {
    // Indices are checked where they are made (the router); the kernel trusts them.
    kernels::DeviceAssignment d =
        kernels::assign_capacity(expert_index, num_experts, group_size, capacity);
    a.capacity = capacity;
    a.slot = d.slot;
    a.row = d.row;
    a.kept_per_expert = std::move(d.kept_per_expert);
    a.expert_offset = std::move(d.expert_offset);
    a.dropped = d.dropped;
    return a;
  }
#endif
  require_cpu(expert_index, "assign_capacity");
  a.capacity = capacity;
  a.slot = Tensor::empty({n}, DType::i32);
  a.kept_per_expert.assign(num_experts, 0);
  const int32_t* idx = expert_index.data<int32_t>();
  int32_t* slot = a.slot.data<int32_t>();
  std::vector<int64_t> in_group(num_experts);
  for (int64_t start = 0; start < n; start += group_size) {
    std::fill(in_group.begin(), in_group.end(), 0);
    for (int64_t t = start; t < start + group_size; ++t) {
      const int32_t e = idx[t];
      SW_CHECK(e >= 0 && e < num_experts, Status::kOutOfRange, "assign_capacity: expert index ", e,
               " at token ", t, " is outside [0, ", num_experts, ")");
      if (++in_group[e] <= capacity) {
        slot[t] = static_cast<int32_t>(a.kept_per_expert[e]++);
      } else {
        slot[t] = -1;
        ++a.dropped;
      }
    }
  }
  a.expert_offset.assign(num_experts + 1, 0);
  for (int64_t e = 0; e < num_experts; ++e)
    a.expert_offset[e + 1] = a.expert_offset[e] + a.kept_per_expert[e];
  a.row = Tensor::empty({n}, DType::i32);
  int32_t* row = a.row.data<int32_t>();
  for (int64_t t = 0; t < n; ++t)
    row[t] = slot[t] < 0 ? -1 : static_cast<int32_t>(a.expert_offset[idx[t]] + slot[t]);
  return a;
}

namespace {

// The assignment describes n tokens whose rows lie in the dispatched buffer.
void check_rows(const CapacityAssignment& a, int64_t n, const char* op) {
  SW_CHECK_ARG(a.row.defined() && a.row.numel() == n, op, ": ", n,
               " tokens, but an assignment for ", a.row.defined() ? a.row.numel() : 0);
  if (!a.row.device().is_cpu()) return;  // made on the device by assign_capacity
  const int32_t* row = a.row.data<int32_t>();
  for (int64_t t = 0; t < n; ++t)
    SW_CHECK(row[t] >= -1 && row[t] < a.kept(), Status::kOutOfRange, op, ": row ", row[t],
             " of token ", t, " is outside the ", a.kept(), " dispatched rows");
}

}  // namespace

Tensor dispatch(const Tensor& x, const CapacityAssignment& a) {
  SW_CHECK_ARG(x.ndim() == 2, "dispatch: x must be [N, d], got ", x.str());
  const int64_t n = x.dim(0), d = x.dim(1);
  check_rows(a, n, "dispatch");
#ifdef SW_WITH_CUDA
  if (on_cuda(x)) return kernels::dispatch(x, a.row, a.kept());
#endif
  require_cpu(x, "dispatch");
  Tensor buffer = Tensor::empty({a.kept(), d}, x.dtype());
  const size_t row_bytes = static_cast<size_t>(d) * dtype_size(x.dtype());
  const int32_t* row = a.row.data<int32_t>();
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(buffer.raw());
  for (int64_t t = 0; t < n; ++t)
    if (row[t] >= 0) std::memcpy(dst + row[t] * row_bytes, src + t * row_bytes, row_bytes);
  return buffer;
}

Tensor combine(const Tensor& expert_out, const Tensor& gate, const CapacityAssignment& a) {
  const int64_t n = a.row.defined() ? a.row.numel() : 0;
  SW_CHECK_ARG(expert_out.ndim() == 2 && expert_out.dim(0) == a.kept(), "combine: expert output ",
               expert_out.str(), " does not hold the ", a.kept(), " kept tokens");
  check_rows(a, n, "combine");
  check_shape(gate, {n}, "combine: gate");
#ifdef SW_WITH_CUDA
  if (on_cuda(expert_out)) return kernels::combine(expert_out, a.row, gate);
#endif
  require_cpu(expert_out, "combine");
  check_dtype(gate, expert_out.dtype(), "combine: gate");
  const int64_t d = expert_out.dim(1);
  Tensor y = Tensor::empty({n, d}, expert_out.dtype());
  dispatch_float(expert_out.dtype(), "combine", [&](auto zero) {
    using T = decltype(zero);
    const T* src = expert_out.data<T>();
    const T* g = gate.data<T>();
    const int32_t* row = a.row.data<int32_t>();
    T* out = y.data<T>();
    for (int64_t t = 0; t < n; ++t) {
      T* y_row = out + t * d;
      if (row[t] < 0) {
        std::fill(y_row, y_row + d, T(0));  // dropped: the sublayer passes h through
        continue;
      }
      const T* e_row = src + row[t] * d;
      for (int64_t i = 0; i < d; ++i) y_row[i] = g[t] * e_row[i];
    }
  });
  return y;
}

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
  check_shape(assigned, {n}, "load_balancing_loss: assigned experts");
  SW_CHECK_ARG(n % groups_ == 0, "load_balancing_loss: ", n, " tokens do not split into ", groups_,
               " groups");
  check_dtype(assigned, DType::i32, "load_balancing_loss: assigned experts");
  const int64_t per_group = n / groups_;
  const int32_t* idx = assigned.data<int32_t>();
  for (int64_t t = 0; t < n; ++t)
    SW_CHECK(idx[t] >= 0 && idx[t] < experts_, Status::kOutOfRange, "load_balancing_loss: expert ",
             idx[t], " at token ", t, " is outside [0, ", experts_, ")");
  dispatch_float(probs.dtype(), "load_balancing_loss", [&](auto zero) {
    using T = decltype(zero);
    const T* p = probs.data<T>();
    for (int64_t t = 0; t < n; ++t) {
      const int64_t g = t / per_group;
      counts_[g * experts_ + idx[t]] += 1.0;
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
  const int64_t n = r.expert_index.numel(), experts = r.probs.dim(1);
  RoutingStats s;
  s.tokens_per_expert.assign(experts, 0);
  SW_CHECK_ARG(a.num_experts() == experts && a.slot.numel() == n,
               "routing_stats: the assignment does not match the router output");
  s.kept_per_expert = a.kept_per_expert;
  const int32_t* idx = r.expert_index.data<int32_t>();
  for (int64_t t = 0; t < n; ++t) ++s.tokens_per_expert[idx[t]];
  s.dropped_fraction = n ? static_cast<double>(a.dropped) / static_cast<double>(n) : 0.0;
  dispatch_float(r.probs.dtype(), "routing_stats", [&](auto zero) {
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
