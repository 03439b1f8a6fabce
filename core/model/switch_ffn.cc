#include "core/model/switch_ffn.h"

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
  const ops::CapacityAssignment& a = out.assignment;
  const Tensor buffer = ops::dispatch(expert_input, a);
  Tensor hidden = ffn_hidden(config.activation(), w.experts, [&](const Tensor& weight) {
    Tensor h = Tensor::empty({a.kept(), config.d_ff()}, x.dtype(), x.device());
    ops::grouped_matmul(buffer, weight, true, h, a.expert_offset);
    return h;
  });
  const ops::DropoutSpec expert_dropout = ctx.dropout(dropout_site, config.expert_dropout_rate());
  if (expert_dropout.active()) ops::dropout_rows_(hidden, expert_dropout, a.token_of_row());
  Tensor expert_out = Tensor::empty({a.kept(), config.d_model()}, x.dtype(), x.device());
  ops::grouped_matmul(hidden, w.experts.wo, true, expert_out, a.expert_offset);
  out.y = ops::combine(expert_out, out.router.gate, a);
  return out;
}

}  // namespace sw
