#include "core/model/switch_ffn.h"

#include <cmath>

#include "core/ops/activation.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/gemm.h"
#include "core/ops/softmax.h"

namespace sw {

SwitchOutput switch_ffn(const SwitchWeights& w, const ModelConfig& config, const Tensor& x,
                        int64_t group_size, const RunContext& ctx, uint32_t jitter_site,
                        uint32_t dropout_site, Communicator* expert_group) {
  const int64_t experts = config.num_experts();
  SwitchOutput out;
  Tensor jittered;
  out.router =
      ops::route(x, w.router, ctx.jitter(jitter_site, config.router_jitter_eps()), &jittered);
  const int64_t capacity = expert_capacity(config, group_size, ctx.train);
  out.assignment = ops::assign_capacity(out.router.expert_index, experts, group_size, capacity);

  const Tensor& expert_input = config.jitter_reaches_experts() ? jittered : x;
  const bool parallel = expert_group && expert_group->size() > 1;
  SW_CHECK(!parallel || x.device().is_cpu(), Status::kUnsupported,
           "expert parallelism runs on the CPU path in this version");
  // On the GPU, the paper's padded [E, rows, d] layout runs each projection as one
  // strided-batched GEMM, about 3x the rate of cuBLAS's grouped GEMM (docs/PERF.md); it
  // is worth up to twice the kept rows. Dropless or collapsed routing keeps the grouped
  // layout, as does the CPU.
  ops::CapacityAssignment layout = out.assignment;
  const int64_t rows = layout.max_kept();
  const bool padded = !x.device().is_cpu() && experts * rows <= 2 * layout.kept();
  if (padded) layout = layout.padded(out.router.expert_index, rows);
  out.router_input = jittered;
  out.expert_input = expert_input;
  out.layout = layout;
  const Tensor dispatched = ops::dispatch(expert_input, layout);
  if (parallel) {
    // Every rank's rows for this rank's experts, and the tokens they stand for.
    auto plan = std::make_shared<ExpertExchange>(
        plan_expert_exchange(*expert_group, layout.kept_per_expert));
    const std::vector<int64_t> tokens = layout.token_of_row();
    out.buffer = send_to_experts(*expert_group, *plan, dispatched);
    const Tensor ids = send_to_experts(
        *expert_group, *plan,
        Tensor::from_vector<int64_t>(tokens, {static_cast<int64_t>(tokens.size()), 1}));
    out.expert_tokens.assign(ids.data<int64_t>(), ids.data<int64_t>() + ids.numel());
    out.expert_offset = plan->local_offset;
    out.expert_group = expert_group;
    out.exchange = std::move(plan);
  } else {
    out.buffer = dispatched;
    out.expert_offset = layout.expert_offset;
    out.expert_tokens = layout.token_of_row();
  }
  auto project = [&](const Tensor& input, const Tensor& weight) {
    const int64_t width = weight.dim(1);
    Tensor result = Tensor::empty({input.dim(0), width}, x.dtype(), x.device());
    if (padded) {
      Tensor batched = result.view({experts, rows, width});
      ops::batched_matmul(input.view({experts, rows, input.dim(1)}), false, weight, true, batched);
    } else {
      ops::grouped_matmul(input, weight, true, result, out.expert_offset);
    }
    return result;
  };
  out.hidden = ffn_hidden(
      config.activation(), w.experts,
      [&](const Tensor& weight) { return project(out.buffer, weight); }, &out.pre_activation,
      &out.pre_linear);
  const ops::DropoutSpec expert_dropout =
      ctx.dropout_part(ctx.dropout(dropout_site, config.expert_dropout_rate()), out.hidden.dim(1));
  if (expert_dropout.active()) ops::dropout_rows_(out.hidden, expert_dropout, out.expert_tokens);
  // Under model parallelism each rank's experts hold a slice of d_ff: a partial sum, which
  // is completed before the combine (whose backward needs the whole output).
  Tensor expert_rows_out = project(out.hidden, w.experts.wo);
  ctx.reduce_partial(expert_rows_out);
  out.expert_out = parallel ? return_from_experts(*expert_group, *out.exchange, expert_rows_out)
                            : expert_rows_out;
  out.y = ops::combine(out.expert_out, out.router.gate, layout);
  return out;
}

namespace {

// The expert weight gradients: for each expert e, d_weight[e] (+)= dy_e^T @ x_e over its
// block of rows.
Tensor& gradient_slot(Tensor& slot, const Tensor& like) {
  if (!slot.defined()) slot = Tensor::zeros(like.shape(), like.dtype());
  return slot;
}

}  // namespace

Tensor switch_ffn_backward(const SwitchWeights& w, const ModelConfig& config, const Tensor& x,
                           const SwitchOutput& fwd, const Tensor& dy, double aux_scale,
                           double z_scale, int64_t group_size, const RunContext& ctx,
                           uint32_t jitter_site, uint32_t dropout_site, SwitchGradients& grads) {
  SW_CHECK(x.device().is_cpu(), Status::kUnsupported, "switch_ffn backward: cpu only for now");
  SW_CHECK(config.aux_loss_mode() == ModelConfig::AUX_PER_LAYER, Status::kUnsupported,
           "switch_ffn backward: the HF aux_loss_modes have no backward yet (use AUX_PER_LAYER)");
  check_shape(dy, x.shape(), "switch_ffn backward: dy");
  const ops::CapacityAssignment& layout = fwd.layout;
  const int64_t n = x.dim(0), d = x.dim(1), experts = config.num_experts(), rows = layout.kept();
  const bool gated = config.activation() == ModelConfig::GATED_GELU;
  const int32_t* row = layout.row.data<int32_t>();
  const int32_t* index = fwd.router.expert_index.data<int32_t>();
  Tensor d_probs = Tensor::zeros({n, experts}, x.dtype());
  Tensor d_expert_out = Tensor::zeros({rows, d}, x.dtype());
  ops::dispatch_float(x.dtype(), "switch_ffn backward", [&](auto zero) {
    using T = decltype(zero);
    const T* g = dy.data<T>();
    const T* gate = fwd.router.gate.data<T>();
    const T* eo = fwd.expert_out.data<T>();
    T* deo = d_expert_out.data<T>();
    T* dp = d_probs.data<T>();
    // Combine: y[t] = gate[t] * expert_out[row t].
    for (int64_t t = 0; t < n; ++t) {
      if (row[t] < 0) continue;  // dropped: no expert, no gate gradient
      T dgate = 0;
      for (int64_t i = 0; i < d; ++i) {
        deo[row[t] * d + i] = gate[t] * g[t * d + i];
        dgate += g[t * d + i] * eo[row[t] * d + i];
      }
      dp[t * experts + index[t]] += dgate;
    }
    // Aux loss (per layer): coef * E * mean_g sum_i f_gi P_gi with P_gi the group's mean
    // probability, so dL/dp_ti = coef * E * f_gi / (n_g * G); f is a constant.
    const double aux = config.aux_loss_coef() * aux_scale;
    if (aux != 0) {
      const int64_t groups = n / group_size;
      for (int64_t g0 = 0; g0 < groups; ++g0) {
        std::vector<double> f(experts, 0.0);
        for (int64_t t = g0 * group_size; t < (g0 + 1) * group_size; ++t)
          f[index[t]] += 1.0 / group_size;
        for (int64_t t = g0 * group_size; t < (g0 + 1) * group_size; ++t)
          for (int64_t e = 0; e < experts; ++e)
            dp[t * experts + e] += static_cast<T>(aux * experts * f[e] / (group_size * groups));
      }
    }
  });
  // The experts, backwards (on their owners' rows with expert parallelism): wo, expert
  // dropout, activation, wi.
  const Tensor d_rows =
      fwd.exchange ? send_to_experts(*fwd.expert_group, *fwd.exchange, d_expert_out) : d_expert_out;
  const std::vector<int64_t>& offset = fwd.expert_offset;
  auto project_back = [&](const Tensor& grad_out, const Tensor& weight) {  // grad_out @ W_e
    Tensor result = Tensor::empty({grad_out.dim(0), weight.dim(2)}, x.dtype());
    ops::grouped_matmul(grad_out, weight, false, result, offset);
    return result;
  };
  Tensor d_hidden = project_back(d_rows, w.experts.wo);
  ops::grouped_weight_gradient(d_rows, fwd.hidden, offset,
                               gradient_slot(grads.experts.wo, w.experts.wo));
  const ops::DropoutSpec expert_dropout =
      ctx.dropout_part(ctx.dropout(dropout_site, config.expert_dropout_rate()), d_hidden.dim(1));
  if (expert_dropout.active()) ops::dropout_rows_(d_hidden, expert_dropout, fwd.expert_tokens);
  Tensor d_buffer;
  if (gated) {
    Tensor d_pre, d_linear;
    ops::gated_gelu_backward(d_hidden, fwd.pre_activation, fwd.pre_linear, d_pre, d_linear);
    d_buffer = project_back(d_pre, w.experts.wi_0);
    ops::add_(d_buffer, project_back(d_linear, w.experts.wi_1));
    ops::grouped_weight_gradient(d_pre, fwd.buffer, offset,
                                 gradient_slot(grads.experts.wi_0, w.experts.wi_0));
    ops::grouped_weight_gradient(d_linear, fwd.buffer, offset,
                                 gradient_slot(grads.experts.wi_1, w.experts.wi_1));
  } else {
    const Tensor d_pre = config.activation() == ModelConfig::RELU
                             ? ops::relu_backward(d_hidden, fwd.pre_activation)
                             : ops::gelu_backward(d_hidden, fwd.pre_activation);
    d_buffer = project_back(d_pre, w.experts.wi);
    ops::grouped_weight_gradient(d_pre, fwd.buffer, offset,
                                 gradient_slot(grads.experts.wi, w.experts.wi));
  }
  if (fwd.exchange) d_buffer = return_from_experts(*fwd.expert_group, *fwd.exchange, d_buffer);
  ctx.reduce_partial(d_buffer);  // model parallelism: each rank's d_ff slice contributed
  // The router: logits = router_input @ W^T, probs = softmax(logits), plus the z-loss
  // coef * mean_t lse_t^2, whose gradient is coef * 2 lse_t p_t / N.
  Tensor d_logits = ops::softmax_backward(d_probs, fwd.router.probs);
  const double z = config.z_loss_coef() * z_scale;
  if (z != 0) {
    const Tensor lse = ops::logsumexp(fwd.router.logits);
    ops::dispatch_float(x.dtype(), "switch_ffn backward", [&](auto zero) {
      using T = decltype(zero);
      T* dl = d_logits.data<T>();
      const T* p = fwd.router.probs.data<T>();
      for (int64_t t = 0; t < n; ++t)
        for (int64_t e = 0; e < experts; ++e)
          dl[t * experts + e] += static_cast<T>(z * 2.0 * lse.item(t) / n) * p[t * experts + e];
    });
  }
  ops::linear_backward_weight(d_logits, fwd.router_input, gradient_slot(grads.router, w.router),
                              true);
  Tensor d_router_input = ops::linear_backward_input(d_logits, w.router);
  // Dispatch backward: each kept token's buffer row flows back to the expert input.
  Tensor d_expert_input = Tensor::zeros({n, d}, x.dtype());
  ops::dispatch_float(x.dtype(), "switch_ffn backward", [&](auto zero) {
    using T = decltype(zero);
    const T* db = d_buffer.data<T>();
    T* de = d_expert_input.data<T>();
    for (int64_t t = 0; t < n; ++t)
      if (row[t] >= 0)
        for (int64_t i = 0; i < d; ++i) de[t * d + i] = db[row[t] * d + i];
  });
  // Jitter multiplies the router input by fixed noise; HF lets the experts read it too.
  if (config.jitter_reaches_experts()) ops::add_(d_router_input, d_expert_input);
  const ops::RouterJitter jitter = ctx.jitter(jitter_site, config.router_jitter_eps());
  if (jitter.active()) {
    ops::dispatch_float(x.dtype(), "switch_ffn backward", [&](auto zero) {
      using T = decltype(zero);
      T* g = d_router_input.data<T>();
      for (int64_t i = 0; i < d_router_input.numel(); ++i)
        g[i] *= static_cast<T>(1.0 - jitter.eps + 2.0 * jitter.eps * jitter.stream.uniform(i));
    });
  }
  if (!config.jitter_reaches_experts()) ops::add_(d_router_input, d_expert_input);
  return d_router_input;
}

}  // namespace sw
