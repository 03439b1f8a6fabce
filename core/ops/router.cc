#include "core/ops/router.h"

#include <algorithm>

#include "core/ops/checks.h"
#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/router.cuh"

namespace sw::ops {

namespace {

void check_route(const Tensor& x, const Tensor& weight, const RouterJitter& jitter, int64_t top_k,
                 const Tensor* choice_bias) {
  SW_CHECK_ARG(x.ndim() == 2 && weight.ndim() == 2 && weight.dim(1) == x.dim(1),
               "route: expected x [N, d] and weight [E, d], got ", x.str(), ", ", weight.str());
  SW_CHECK_ARG(weight.dim(0) >= 1, "route: the router weight has no experts: ", weight.str());
  SW_CHECK_ARG(x.device() == weight.device(), "route: x on ", x.device().str(), ", weight on ",
               weight.device().str());
  if (jitter.active()) {
    SW_CHECK_ARG(jitter.eps < 1.0, "route: jitter eps must be in [0, 1), got ", jitter.eps);
    check_stream_size(x.numel(), "router jitter");
  }
  SW_CHECK_ARG(top_k >= 1 && top_k <= weight.dim(0), "route: top_k must be in [1, ", weight.dim(0),
               "], got ", top_k);
  if (choice_bias) {
    check_shape(*choice_bias, {weight.dim(0)}, "route: choice bias");
    check_same_device({&x, choice_bias}, "route");
  }
}

}  // namespace

RouterOutput route(const Tensor& x, const Tensor& weight, const RouterJitter& jitter,
                   Tensor* jittered_x, int64_t top_k, bool normalize_gates,
                   const Tensor* choice_bias) {
  check_route(x, weight, jitter, top_k, choice_bias);
  if (on_cuda(x)) {
    SW_CHECK(top_k == 1, Status::kUnsupported, "route: top-", top_k,
             " routing runs on the cpu in this version (the GPU router is top-1)");
    SW_CHECK(!choice_bias, Status::kUnsupported,
             "route: a balancing choice bias runs on the cpu in this version");
    SW_RUN_ON_CUDA(kernels::route(x, weight, jitter, jittered_x));
  }
  check_dtype(weight, x.dtype(), "route: weight");
  if (choice_bias) check_dtype(*choice_bias, x.dtype(), "route: choice bias");
  return cpu::route(x, weight, jitter, jittered_x, top_k, normalize_gates, choice_bias);
}

RoutedTokens route_with_capacity(const Tensor& x, const Tensor& weight, const RouterJitter& jitter,
                                 Tensor* jittered_x, int64_t group_size, int64_t capacity,
                                 int64_t fixed_rows) {
  check_route(x, weight, jitter, 1, nullptr);
  SW_CHECK_ARG(group_size >= 1 && x.dim(0) % group_size == 0, "route_with_capacity: ", x.dim(0),
               " tokens do not split into groups of ", group_size);
  SW_CHECK_ARG(capacity >= 0, "route_with_capacity: capacity must be >= 0, got ", capacity);
  const int64_t most_kept = std::min(capacity, group_size) * (x.dim(0) / group_size);
  SW_CHECK_ARG(fixed_rows == 0 || fixed_rows >= most_kept, "route_with_capacity: ", fixed_rows,
               " fixed rows per expert cannot hold the ", most_kept,
               " tokens an expert may keep (capacity x groups)");
  if (on_cuda(x))
    SW_RUN_ON_CUDA(kernels::route_with_capacity(x, weight, jitter, jittered_x, group_size, capacity,
                                                fixed_rows));
  RoutedTokens r;
  r.router = route(x, weight, jitter, jittered_x);
  r.assignment = assign_capacity(r.router.expert_index, weight.dim(0), group_size, capacity);
  if (fixed_rows > 0) r.assignment = r.assignment.padded(r.router.expert_index, fixed_rows);
  return r;
}

Tensor router_backward(const RouterOutput& r, const Tensor& d_gate,
                       const RouterLossGradients& losses) {
  const int64_t n = r.probs.dim(0);
  check_shape(d_gate, r.expert_index.shape(), "router backward: d_gate");
  check_same_device({&r.probs, &r.logits, &r.expert_index, &d_gate}, "router backward");
  check_dtype(d_gate, r.probs.dtype(), "router backward: d_gate");
  if (losses.aux != 0)
    SW_CHECK_ARG(losses.group_size >= 1 && n % losses.group_size == 0, "router backward: ", n,
                 " tokens do not split into groups of ", losses.group_size);
  if (on_cuda(r.probs)) {
    SW_CHECK(!r.normalized_gates, Status::kUnsupported,
             "router backward: normalized top-k gates run on the cpu in this version");
    SW_RUN_ON_CUDA(kernels::router_backward(r, d_gate, losses));
  }
  return stored(cpu::router_backward(r, d_gate, losses));
}

void jitter_backward_(Tensor& d_input, const RouterJitter& jitter) {
  if (!jitter.active()) return;
  check_stream_size(d_input.numel(), "router jitter backward");
  if (on_cuda(d_input)) SW_RUN_ON_CUDA(kernels::jitter_backward_(d_input, jitter));
  cpu::jitter_backward_(d_input, jitter);
  stored(d_input);
}

}  // namespace sw::ops
