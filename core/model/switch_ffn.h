// The Switch FFN layer (docs/MATH.md §2): route each token to one expert, keep at most
// `capacity` tokens per expert per group, run the experts as grouped GEMMs over their
// blocks of kept tokens, and scale each kept token's output by its gate. Expert dropout
// is keyed by (token, feature), so its mask does not depend on the buffer layout.
#pragma once

#include <memory>
#include <vector>

#include "core/dist/expert_parallel.h"
#include "core/model/config.h"
#include "core/model/feed_forward.h"
#include "core/model/run_context.h"
#include "core/ops/capacity.h"
#include "core/ops/gemm.h"
#include "core/ops/router.h"
#include "core/ops/router_loss.h"
#include "core/tensor/tensor.h"

namespace sw {

struct SwitchWeights {
  Tensor router;  // [E, d] (HF mlp.router.classifier.weight)
  // The experts' FFNs stacked: wi, wi_0, wi_1 [E, d_ff, d] and wo [E, d, d_ff]; slice j of
  // each is the HF experts.expert_j weight of the same name.
  FeedForwardWeights experts;
  // Aux-loss-free balancing: [E] added to the probabilities for the choice only (a buffer
  // the trainer moves); undefined when off.
  Tensor choice_bias;
};

struct SwitchOutput {
  Tensor y;  // [N, d]: gate * expert(x) for kept tokens, 0 for dropped ones
  ops::RouterOutput router;
  ops::CapacityAssignment assignment;
  // What the backward needs (filled on every call; tensors share storage, no copies).
  Tensor router_input;             // [N, d] the (jittered) router input
  Tensor expert_input;             // [N, d] what the experts read
  ops::CapacityAssignment layout;  // this rank's tokens in the dispatched layout
  Tensor expert_out;               // [layout rows, d] the experts' outputs in that layout
  // The rows the local experts ran on: this rank's dispatched tokens or, with expert
  // parallelism, every rank's tokens for this rank's experts, grouped by local expert.
  Tensor buffer;                       // [rows, d]
  std::vector<int64_t> expert_offset;  // [local experts + 1] each expert's block of rows
  // Each row's global token in the step, i64 [rows] (on the host under expert
  // parallelism, else on the model's device), each below expert_token_limit: only with
  // expert dropout or expert parallelism (undefined otherwise).
  Tensor expert_tokens;
  int64_t expert_token_limit = 0;
  // [rows, d_ff] buffer @ wi^T (wi_0 for GEGLU); undefined when `activation` holds it.
  Tensor pre_activation;
  // In the GPU's padded layout, ReLU or the tanh GELU ran in the first GEMM's epilogue:
  // what the backward GEMM's epilogue needs for its derivative. Undefined otherwise.
  ops::ActivationSaved activation;
  Tensor pre_linear;  // [rows, d_ff] buffer @ wi_1^T (GEGLU only)
  Tensor hidden;      // [rows, d_ff] after activation and expert dropout
  // Expert parallelism: the group (not owned) and this call's exchange plan; null without.
  Communicator* expert_group = nullptr;
  std::shared_ptr<const ExpertExchange> exchange;
};

// Where the GPU's fixed padded expert layout (ForwardOptions::fixed_expert_capacity)
// applies: a GPU model, top-1 token-choice routing within capacity (not dropless), no
// router bias update, no expert parallelism. Anything else is a kUnsupported error that
// names it.
void check_fixed_expert_capacity(const ModelConfig& config, const Device& device,
                                 bool expert_parallel);

struct SwitchGradients {
  Tensor router;               // [E, d]
  FeedForwardWeights experts;  // like SwitchWeights::experts
};

// Where a Switch layer's random draws come from: its jitter and expert-dropout sites, and
// the global index in the step's batch of its first token (expert dropout is keyed by
// global token, so a row keeps its mask on whichever rank its expert runs).
struct SwitchSites {
  uint32_t jitter = 0, dropout = 0;
  int64_t first_token = 0;
};

// x [N, d], the normed sublayer input, N = groups * group_size in token order. With an expert group
// of n > 1 ranks, w.experts holds this rank's E / n experts (core/dist/expert_parallel.h) and every
// rank of the group calls this for the layer together (on the cpu, or on GPUs through a
// communicator that moves device tensors: core/dist/device_communicator.h).
SwitchOutput switch_ffn(const SwitchWeights& w, const ModelConfig& config, const Tensor& x,
                        int64_t group_size, const RunContext& ctx, const SwitchSites& sites,
                        Communicator* expert_group = nullptr);

// Backward of y and of this layer's loss terms (AUX_PER_LAYER): aux_scale and z_scale
// multiply the layer's aux and z losses in the total (1 for the plain sum). The gradient reaches
// the router through the gates, the aux loss's mean probabilities P_i and the z-loss; routing
// decisions and capacity are constants; dropped tokens give their expert nothing. Returns
// dx; `grads` accumulates the weight gradients (allocated on first use); with expert
// parallelism, the local experts' gradients from every rank's tokens.
Tensor switch_ffn_backward(const SwitchWeights& w, const ModelConfig& config, const Tensor& x,
                           const SwitchOutput& fwd, const Tensor& dy, double aux_scale,
                           double z_scale, int64_t group_size, const RunContext& ctx,
                           const SwitchSites& sites, SwitchGradients& grads);

// One sparse layer's routing in a forward: what the trainer, the C ABI and generation
// report.
struct LayerRouting {
  Stack stack = Stack::kEncoder;
  int64_t block = 0;
  int64_t capacity = 0;  // per expert per group
  int64_t group_size = 0;
  ops::RoutingStats stats;
  Tensor expert_index;  // i32 [B*T, k], each token's chosen experts (before capacity)
  // This layer's terms of the totals under AUX_PER_LAYER; 0 under the HF modes, whose
  // terms belong to a whole stack.
  double aux_loss = 0.0;
  double z_loss = 0.0;
};

// The routing record of one Switch layer's forward (no loss terms: see RoutingLosses).
LayerRouting layer_routing(Stack stack, int64_t block, const SwitchOutput& out, int64_t group_size);

// The load-balancing and z losses of one stack's sparse layers (docs/MATH.md §3), with their
// coefficients, in the config's aux_loss_mode: each layer's own terms (AUX_PER_LAYER), or
// one balance over all the stack's layers per sequence and one z mean (the HF modes; as
// transformers, nothing for a stack whose sparse step is 1, every block sparse).
// Adds to running totals that span both stacks, layer by layer.
class RoutingLosses {
 public:
  RoutingLosses(const ModelConfig& config, Stack stack, int64_t batch, double& aux_total,
                double& z_total);
  // Records a sparse layer's routing in `routing`. Its statistics and loss terms are
  // summed by finish_stack: on a GPU each is a reduction whose result the host reads, and
  // waiting for it after every layer would drain the device's queue once per layer.
  void add_layer(Stack stack, int64_t block, const SwitchOutput& out, int64_t group_size,
                 std::vector<LayerRouting>& routing);
  // Fills in every recorded layer's statistics and terms, in layer order, and adds them
  // (and the stack's HF-mode terms) to the totals. A stack that is never finished (a
  // recomputed block's forward) costs none of these sums.
  void finish_stack();

 private:
  struct Pending {
    std::vector<LayerRouting>* routing;
    size_t index;  // of this layer's record in *routing
    ops::RouterOutput router;
    ops::CapacityAssignment assignment;
    int64_t group_size;
  };
  void count_layer(const Pending& p);

  std::vector<Pending> pending_;
  const ModelConfig& config_;
  bool per_layer_;
  bool hf_counts_stack_;  // the HF modes add a stack's terms only when its step is > 1
  double& aux_total_;
  double& z_total_;
  ops::BalanceSums stack_balance_;  // the HF modes: one balance per sequence
  double stack_z_sum_ = 0.0;
  int64_t stack_z_tokens_ = 0, sparse_layers_ = 0;
};

}  // namespace sw
