// The Switch FFN layer (SPEC §2): route each token to one expert, keep at most
// `capacity` tokens per expert per group, run the experts as batched GEMMs over
// [E, rows, d], and scale each kept token's output by its gate.
#pragma once

#include "core/model/config.h"
#include "core/model/run_context.h"
#include "core/ops/routing.h"
#include "core/tensor/tensor.h"

namespace sw {

struct SwitchWeights {
  Tensor router;      // [E, d]  (HF mlp.router.classifier.weight)
  Tensor wi;          // [E, d_ff, d] (RELU, GELU); expert j is the HF expert_j.wi
  Tensor wi_0, wi_1;  // [E, d_ff, d] (GATED_GELU)
  Tensor wo;          // [E, d, d_ff]
};

struct SwitchOutput {
  Tensor y;  // [N, d]: gate * expert(x) for kept tokens, 0 for dropped ones
  ops::RouterOutput router;
  ops::CapacityAssignment assignment;
};

// x [N, d], the normed sublayer input, N = groups * group_size in token order.
// jitter_site / dropout_site address this layer's random streams.
SwitchOutput switch_ffn(const SwitchWeights& w, const ModelConfig& config, const Tensor& x,
                        int64_t group_size, const RunContext& ctx, uint32_t jitter_site,
                        uint32_t dropout_site);

}  // namespace sw
