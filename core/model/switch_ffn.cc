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
  // On the GPU, the paper's padded [E, rows, d] layout runs each projection as one
  // strided-batched GEMM, about 3x the rate of cuBLAS's grouped GEMM (docs/PERF.md); it
  // is worth up to twice the kept rows. Dropless or collapsed routing keeps the grouped
  // layout, as does the CPU.
  ops::CapacityAssignment layout = out.assignment;
  const int64_t rows = layout.max_kept();
  const bool padded = !x.device().is_cpu() && experts * rows <= 2 * layout.kept();
  if (padded) layout = layout.padded(out.router.expert_index, rows);
  const Tensor buffer = ops::dispatch(expert_input, layout);
  auto project = [&](const Tensor& input, const Tensor& weight) {
    const int64_t width = weight.dim(1);
    Tensor result = Tensor::empty({layout.kept(), width}, x.dtype(), x.device());
    if (padded) {
      Tensor batched = result.view({experts, rows, width});
      ops::batched_matmul(input.view({experts, rows, input.dim(1)}), false, weight, true, batched);
    } else {
      ops::grouped_matmul(input, weight, true, result, layout.expert_offset);
    }
    return result;
  };
  Tensor hidden = ffn_hidden(config.activation(), w.experts,
                             [&](const Tensor& weight) { return project(buffer, weight); });
  const ops::DropoutSpec expert_dropout = ctx.dropout(dropout_site, config.expert_dropout_rate());
  if (expert_dropout.active()) ops::dropout_rows_(hidden, expert_dropout, layout.token_of_row());
  const Tensor expert_out = project(hidden, w.experts.wo);
  out.y = ops::combine(expert_out, out.router.gate, layout);
  return out;
}

}  // namespace sw
