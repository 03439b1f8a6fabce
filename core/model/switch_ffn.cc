#include "core/model/switch_ffn.h"

#include "core/model/feed_forward.h"
#include "core/ops/gemm.h"

namespace sw {

SwitchOutput switch_ffn(const SwitchWeights& w, const ModelConfig& config, const Tensor& x,
                        int64_t group_size, const RunContext& ctx, uint32_t jitter_site,
                        uint32_t dropout_site) {
  const int64_t experts = config.num_experts();
  SwitchOutput out;
  Tensor jittered;
  out.router =
      ops::route(x, w.router, ctx.jitter(jitter_site, config.router_jitter_eps()), &jittered);
  const int64_t capacity = expert_capacity(config, group_size, ctx.train);
  out.assignment = ops::assign_capacity(out.router.expert_index, experts, group_size, capacity);

  const Tensor& expert_input = config.jitter_reaches_experts() ? jittered : x;
  const Tensor buffer =
      ops::dispatch(expert_input, out.router.expert_index, out.assignment, experts);
  const int64_t rows = out.assignment.buffer_rows, d_ff = config.d_ff();
  const int64_t* kept = out.assignment.kept_per_expert.data();

  auto project_in = [&](const Tensor& weight) {
    Tensor h = Tensor::empty({experts, rows, d_ff}, x.dtype());
    ops::batched_matmul(buffer, false, weight, true, h, kept);
    return h;
  };
  Tensor hidden;
  if (config.activation() == ModelConfig::GATED_GELU) {
    const Tensor h_linear = project_in(w.wi_1);
    hidden = ffn_activation(config.activation(), project_in(w.wi_0), &h_linear);
  } else {
    hidden = ffn_activation(config.activation(), project_in(w.wi), nullptr);
  }
  ops::dropout_(hidden, ctx.dropout(dropout_site, config.expert_dropout_rate()));
  Tensor expert_out = Tensor::empty({experts, rows, config.d_model()}, x.dtype());
  ops::batched_matmul(hidden, false, w.wo, true, expert_out, kept);
  out.y = ops::combine(expert_out, out.router.expert_index, out.router.gate, out.assignment);
  return out;
}

}  // namespace sw
