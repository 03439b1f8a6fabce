#include "core/model/switch_ffn.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "core/model/parameters.h"
#include "core/ops/activation.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/gemm.h"
#include "core/ops/router.h"
#include "core/ops/storage.h"

namespace sw {
namespace {

// Whether the router stores bf16: under bf16 storage (core/ops/storage.h), unless the
// config keeps it in f32 (selective precision).
bool router_in_bf16(const ModelConfig& config) {
  return ops::bf16_storage() && config.router_dtype() == ModelConfig::ROUTER_BFLOAT16;
}

// The activations a GEMM epilogue applies (and whose derivative the backward GEMM's
// epilogue applies); kNone for the exact GELU and GEGLU, which run apart.
ops::Epilogue fused_activation(ModelConfig::Activation activation) {
  if (activation == ModelConfig::RELU) return ops::Epilogue::kRelu;
  if (activation == ModelConfig::GELU) return ops::Epilogue::kGelu;
  return ops::Epilogue::kNone;
}

}  // namespace

SwitchOutput switch_ffn(const SwitchWeights& w, const ModelConfig& config, const Tensor& x,
                        int64_t group_size, const RunContext& ctx, const SwitchSites& sites,
                        Communicator* expert_group) {
  const int64_t experts = config.num_experts();
  SwitchOutput out;
  Tensor jittered;
  // Expert choice: every expert is a candidate for every token (the router's top-E, raw
  // probabilities as gates) and the experts pick their tokens.
  const bool expert_choice = config.routing() == ModelConfig::EXPERT_CHOICE;
  const ops::RouterJitter jitter = ctx.jitter(sites.jitter, config.router_jitter_eps());
  const int64_t capacity = expert_capacity(config, group_size, ctx.train);
  const bool parallel = expert_group && expert_group->size() > 1;
  // The fixed padded layout: every expert owns the rows it could keep at most, so nothing
  // waits for the router's counts (0: the layout is sized from them). Where that buffer
  // would exceed twice the tokens (a capacity near the group size over many experts) the
  // layer sizes it from the counts, as without the option.
  int64_t fixed_rows = 0;
  if (ctx.fixed_expert_capacity) {
    check_fixed_expert_capacity(config, x.device(), parallel);
    const int64_t rows = std::min(capacity, group_size) * (x.dim(0) / group_size);
    if (experts * rows <= 2 * x.dim(0) && experts * rows <= INT32_MAX) fixed_rows = rows;
  }
  if (!expert_choice && config.num_selected_experts() == 1 && !w.choice_bias.defined()) {
    // The Switch case: on a GPU, softmax, top-1 and capacity in one kernel.
    const ops::Bf16Storage router_precision(router_in_bf16(config));
    ops::RoutedTokens routed =
        ops::route_with_capacity(x, w.router, jitter, &jittered, group_size, capacity, fixed_rows);
    out.router = std::move(routed.router);
    out.assignment = std::move(routed.assignment);
  } else {
    {
      const ops::Bf16Storage router_precision(router_in_bf16(config));
      out.router = ops::route(x, w.router, jitter, &jittered,
                              expert_choice ? experts : config.num_selected_experts(),
                              !expert_choice && config.normalize_gates(),
                              w.choice_bias.defined() ? &w.choice_bias : nullptr);
    }
    out.assignment =
        expert_choice
            ? ops::assign_expert_choice(out.router.expert_index, out.router.probs, group_size,
                                        capacity)
            : ops::assign_capacity(out.router.expert_index, experts, group_size, capacity);
  }

  const Tensor& expert_input = config.jitter_reaches_experts() ? jittered : x;
  // On the GPU, the paper's padded [E, rows, d] layout runs each projection as one
  // strided-batched GEMM, often faster than the grouped kept rows (docs/PERF.md). In bf16
  // the layout is the one measured fastest for this shape class; in f32 padding is taken
  // whenever allowed (ops::choose_expert_layout). Padding is a candidate up to twice the
  // kept rows, so dropless or collapsed routing stays grouped, as do the CPU and expert
  // parallelism (whose exchange moves kept rows only).
  ops::CapacityAssignment layout = out.assignment;  // already padded when fixed_rows > 0
  const int64_t rows = fixed_rows > 0 ? fixed_rows : layout.max_kept();
  const Tensor& first_weight =
      config.activation() == ModelConfig::GATED_GELU ? w.experts.wi_0 : w.experts.wi;
  const bool padded =
      fixed_rows > 0 || (!x.device().is_cpu() && !parallel &&
                         ops::choose_expert_layout(first_weight, true, layout.kept_per_expert,
                                                   experts * rows <= 2 * layout.kept()) ==
                             ops::ExpertLayout::kPadded);
  if (padded && fixed_rows == 0) layout = layout.padded(out.router.expert_index, rows);
  out.router_input = jittered;
  out.expert_input = expert_input;
  out.layout = layout;
  const Tensor dispatched = ops::dispatch(expert_input, layout);
  // Each dispatched row's token, by its global index in the step's batch: expert dropout
  // draws each row's mask by it and expert parallelism sends it along. Built on the
  // assignment's device (a GPU's never read back), and only then.
  const bool expert_dropout_on =
      ctx.token_dropout(sites.dropout, config.expert_dropout_rate()).active();
  if (parallel) {
    // Every rank's rows for this rank's experts, and the tokens they stand for.
    auto plan = std::make_shared<ExpertExchange>(
        plan_expert_exchange(*expert_group, layout.kept_per_expert));
    out.buffer = send_to_experts(*expert_group, *plan, dispatched);
    const Tensor ids = send_to_experts(
        *expert_group, *plan,
        layout.row_tokens(sites.first_token).to(Device::cpu()).view({layout.kept(), 1}));
    out.expert_tokens = ids.view({ids.numel()});
    out.expert_token_limit = 0;
    for (int64_t i = 0; i < ids.numel(); ++i)
      out.expert_token_limit = std::max(out.expert_token_limit, ids.data<int64_t>()[i] + 1);
    out.expert_offset = plan->local_offset;
    out.expert_group = expert_group;
    out.exchange = std::move(plan);
  } else {
    out.buffer = dispatched;
    out.expert_offset = layout.expert_offset;
    if (expert_dropout_on) {
      out.expert_tokens = layout.row_tokens(sites.first_token);
      out.expert_token_limit = sites.first_token + x.dim(0);
    }
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
  const ops::Epilogue fused = fused_activation(config.activation());
  if (padded && fused != ops::Epilogue::kNone) {
    // The activation in the first GEMM's epilogue, keeping what its backward GEMM's
    // epilogue reads: ReLU's signs (expert dropout below only zeroes or scales up, and a
    // dropped element's gradient is zeroed too) or GELU's pre-activation.
    out.hidden = Tensor::empty({out.buffer.dim(0), w.experts.wi.dim(1)}, x.dtype(), x.device());
    Tensor batched = out.hidden.view({experts, rows, w.experts.wi.dim(1)});
    ops::batched_matmul_activation(out.buffer.view({experts, rows, out.buffer.dim(1)}), false,
                                   w.experts.wi, true, batched, fused, out.activation);
  } else {
    out.hidden = ffn_hidden(
        config.activation(), w.experts,
        [&](const Tensor& weight) { return project(out.buffer, weight); }, &out.pre_activation,
        &out.pre_linear);
  }
  const ops::DropoutSpec expert_dropout = ctx.dropout_part(
      ctx.token_dropout(sites.dropout, config.expert_dropout_rate()), out.hidden.dim(1));
  if (expert_dropout.active())
    ops::dropout_rows_(out.hidden, expert_dropout, out.expert_tokens, out.expert_token_limit);
  // Under model parallelism each rank's experts hold a slice of d_ff: a partial sum, which
  // is completed before the combine (whose backward needs the whole output).
  Tensor expert_rows_out = project(out.hidden, w.experts.wo);
  ctx.reduce_partial(expert_rows_out);
  out.expert_out = parallel ? return_from_experts(*expert_group, *out.exchange, expert_rows_out)
                            : expert_rows_out;
  out.y = ops::combine(out.expert_out, out.router.gate, layout);
  return out;
}

void check_fixed_expert_capacity(const ModelConfig& config, const Device& device,
                                 bool expert_parallel) {
  const char* what = "fixed_expert_capacity (the GPU's fixed padded expert layout)";
  SW_CHECK(!device.is_cpu(), Status::kUnsupported, what,
           ": the model is on the cpu, which groups the kept tokens without padding");
  SW_CHECK(config.routing() != ModelConfig::EXPERT_CHOICE, Status::kUnsupported, what,
           ": needs top-1 token-choice routing, got expert choice");
  SW_CHECK(config.num_selected_experts() == 1, Status::kUnsupported, what,
           ": needs top-1 token-choice routing, got top-", config.num_selected_experts());
  SW_CHECK(config.capacity_mode() != ModelConfig::CAPACITY_DROPLESS, Status::kUnsupported, what,
           ": CAPACITY_DROPLESS would pad every expert to the whole batch");
  SW_CHECK(config.router_bias_update_rate() == 0, Status::kUnsupported, what,
           ": router_bias_update_rate ", config.router_bias_update_rate(),
           " (the choice bias) routes apart from the fused kernel");
  SW_CHECK(!expert_parallel, Status::kUnsupported, what,
           ": expert parallelism exchanges the kept rows only");
}

namespace {

// The expert weight gradients: for each expert e, d_weight[e] (+)= dy_e^T @ x_e over its
// block of rows.
Tensor& gradient_slot(Tensor& slot, const Tensor& like) {
  if (!slot.defined())
    slot = Tensor::zeros(like.shape(), gradient_dtype(like.dtype()), like.device());
  return slot;
}

}  // namespace

Tensor switch_ffn_backward(const SwitchWeights& w, const ModelConfig& config, const Tensor& x,
                           const SwitchOutput& fwd, const Tensor& dy, double aux_scale,
                           double z_scale, int64_t group_size, const RunContext& ctx,
                           const SwitchSites& sites, SwitchGradients& grads) {
  SW_CHECK(config.aux_loss_mode() == ModelConfig::AUX_PER_LAYER, Status::kUnsupported,
           "switch_ffn backward: the HF aux_loss_modes have no backward yet (use AUX_PER_LAYER)");
  check_shape(dy, x.shape(), "switch_ffn backward: dy");
  const ops::CapacityAssignment& layout = fwd.layout;
  const bool gated = config.activation() == ModelConfig::GATED_GELU;
  Tensor d_expert_out, d_gate;
  ops::combine_backward(dy, fwd.expert_out, fwd.router.gate, layout, d_expert_out, d_gate);
  // The experts, backwards (on their owners' rows with expert parallelism): wo, expert
  // dropout, activation, wi.
  const Tensor d_rows =
      fwd.exchange ? send_to_experts(*fwd.expert_group, *fwd.exchange, d_expert_out) : d_expert_out;
  const std::vector<int64_t>& offset = fwd.expert_offset;
  auto project_back = [&](const Tensor& grad_out, const Tensor& weight) {  // grad_out @ W_e
    Tensor result = Tensor::empty({grad_out.dim(0), weight.dim(2)}, x.dtype(), x.device());
    ops::grouped_matmul(grad_out, weight, false, result, offset);
    return result;
  };
  // With the activation in the forward GEMM's epilogue (the padded layout), the backward
  // GEMM applies its derivative as it stores: d_hidden is then already the gradient of
  // the pre-activation. Expert dropout's mask and scale are elementwise, so they may come
  // after the derivative.
  Tensor d_hidden;
  if (fwd.activation.defined()) {
    const int64_t experts = w.experts.wo.dim(0), width = w.experts.wo.dim(2);
    d_hidden = Tensor::empty({d_rows.dim(0), width}, x.dtype(), x.device());
    Tensor batched = d_hidden.view({experts, d_rows.dim(0) / experts, width});
    ops::batched_matmul_activation_backward(
        d_rows.view({experts, d_rows.dim(0) / experts, d_rows.dim(1)}), false, w.experts.wo, false,
        batched, fwd.activation);
  } else {
    d_hidden = project_back(d_rows, w.experts.wo);
  }
  ops::grouped_weight_gradient(d_rows, fwd.hidden, offset,
                               gradient_slot(grads.experts.wo, w.experts.wo));
  const ops::DropoutSpec expert_dropout = ctx.dropout_part(
      ctx.token_dropout(sites.dropout, config.expert_dropout_rate()), d_hidden.dim(1));
  if (expert_dropout.active())
    ops::dropout_rows_(d_hidden, expert_dropout, fwd.expert_tokens, fwd.expert_token_limit);
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
    const Tensor d_pre =
        fwd.activation.defined()
            ? d_hidden
            : activation_backward(config.activation(), d_hidden, fwd.pre_activation);
    d_buffer = project_back(d_pre, w.experts.wi);
    ops::grouped_weight_gradient(d_pre, fwd.buffer, offset,
                                 gradient_slot(grads.experts.wi, w.experts.wi));
  }
  if (fwd.exchange) d_buffer = return_from_experts(*fwd.expert_group, *fwd.exchange, d_buffer);
  ctx.reduce_partial(d_buffer);  // model parallelism: each rank's d_ff slice contributed
  // The router, through the gates and this layer's loss terms (in its own precision).
  ops::RouterLossGradients losses;
  losses.aux = config.aux_loss_coef() * aux_scale;
  losses.group_size = group_size;
  losses.z = config.z_loss_coef() * z_scale;
  Tensor d_router_input;
  {
    const ops::Bf16Storage router_precision(router_in_bf16(config));
    ops::stored(d_gate);  // the gates' gradient, in the router's precision
    const Tensor d_logits = ops::router_backward(fwd.router, d_gate, losses);
    // A bf16 GPU model's router is f32 (docs/MATH.md §2): its input is cast up for the
    // weight's gradient, and the input's gradient stays f32 until the jitter is undone.
    const Tensor router_input = fwd.router_input.dtype() == d_logits.dtype()
                                    ? fwd.router_input
                                    : fwd.router_input.to(d_logits.dtype());
    ops::linear_backward_weight(d_logits, router_input, gradient_slot(grads.router, w.router),
                                true);
    d_router_input = ops::linear_backward_input(d_logits, w.router);
  }
  // Dispatch backward: each kept token's buffer row flows back to the expert input.
  Tensor d_expert_input = ops::dispatch_backward(d_buffer, layout);
  if (d_expert_input.dtype() != d_router_input.dtype())
    d_expert_input = d_expert_input.to(d_router_input.dtype());
  // Jitter multiplies the router input by fixed noise; HF lets the experts read it too.
  if (config.jitter_reaches_experts()) ops::add_(d_router_input, d_expert_input);
  ops::jitter_backward_(d_router_input, ctx.jitter(sites.jitter, config.router_jitter_eps()));
  if (!config.jitter_reaches_experts()) ops::add_(d_router_input, d_expert_input);
  return d_router_input.dtype() == x.dtype() ? d_router_input : d_router_input.to(x.dtype());
}

namespace {

// The expert of each token after capacity, a dropped token counting as expert 0: the
// assignment HF's load-balancing loss sees.
Tensor post_capacity_experts(const ops::RouterOutput& r, const ops::CapacityAssignment& a) {
  Tensor out = r.expert_index.to(Device::cpu());
  const Tensor slots = a.slot.to(Device::cpu());
  int32_t* p = out.data<int32_t>();
  const int32_t* slot = slots.data<int32_t>();
  for (int64_t t = 0; t < out.numel(); ++t)
    if (slot[t] < 0) p[t] = 0;
  return out;
}

}  // namespace

namespace {

// The record without its statistics.
LayerRouting routing_record(Stack stack, int64_t block, const SwitchOutput& out,
                            int64_t group_size) {
  LayerRouting r;
  r.stack = stack;
  r.block = block;
  r.capacity = out.assignment.capacity;
  r.group_size = group_size;
  r.expert_index = out.router.expert_index;
  return r;
}

}  // namespace

LayerRouting layer_routing(Stack stack, int64_t block, const SwitchOutput& out,
                           int64_t group_size) {
  LayerRouting r = routing_record(stack, block, out, group_size);
  r.stats = ops::routing_stats(out.router, out.assignment);
  return r;
}

RoutingLosses::RoutingLosses(const ModelConfig& config, Stack stack, int64_t batch,
                             double& aux_total, double& z_total)
    : config_(config),
      per_layer_(config.aux_loss_mode() == ModelConfig::AUX_PER_LAYER),
      hf_counts_stack_((stack == Stack::kEncoder ? config.encoder_sparse_step()
                                                 : config.decoder_sparse_step()) > 1),
      aux_total_(aux_total),
      z_total_(z_total),
      stack_balance_(batch, config.num_experts()) {}

void RoutingLosses::add_layer(Stack stack, int64_t block, const SwitchOutput& out,
                              int64_t group_size, std::vector<LayerRouting>& routing) {
  routing.push_back(routing_record(stack, block, out, group_size));
  pending_.push_back({&routing, routing.size() - 1, out.router, out.assignment, group_size});
}

void RoutingLosses::count_layer(const Pending& p) {
  LayerRouting& r = (*p.routing)[p.index];
  r.stats = ops::routing_stats(p.router, p.assignment);
  const int64_t tokens = p.router.probs.dim(0);
  const double z = ops::router_z_loss(p.router.logits);
  if (per_layer_) {
    ops::BalanceSums balance(tokens / p.group_size, config_.num_experts());
    balance.add(p.router.probs, p.router.expert_index);
    r.aux_loss = config_.aux_loss_coef() * balance.loss();
    r.z_loss = config_.z_loss_coef() * z;
    aux_total_ += r.aux_loss;
    z_total_ += r.z_loss;
  } else {
    stack_balance_.add(p.router.probs, config_.aux_loss_mode() == ModelConfig::AUX_HF_CONCAT
                                           ? post_capacity_experts(p.router, p.assignment)
                                           : p.router.expert_index.to(Device::cpu()));
    stack_z_sum_ += z * static_cast<double>(tokens);
    stack_z_tokens_ += tokens;
  }
  ++sparse_layers_;
}

void RoutingLosses::finish_stack() {
  for (const Pending& p : pending_) count_layer(p);
  pending_.clear();
  if (per_layer_ || sparse_layers_ == 0 || !hf_counts_stack_) return;
  aux_total_ += config_.aux_loss_coef() * stack_balance_.loss();
  z_total_ += config_.z_loss_coef() * stack_z_sum_ / static_cast<double>(stack_z_tokens_);
}

}  // namespace sw
