// The dense T5 feed-forward: wo(dropout(act(wi x))), or for GEGLU
// wo(dropout(gelu(wi_0 x) * wi_1 x)). The Switch experts use the same activation step.
#pragma once

#include <functional>

#include "core/model/config.h"
#include "core/ops/dropout.h"
#include "core/tensor/tensor.h"

namespace sw {

struct FeedForwardWeights {
  Tensor wi;          // [d_ff, d] (RELU, GELU)
  Tensor wi_0, wi_1;  // [d_ff, d] (GATED_GELU)
  Tensor wo;          // [d, d_ff]
};

// The hidden activation: act(project(wi)), or gelu(project(wi_0)) * project(wi_1) for
// GATED_GELU, where project(w) applies the input projection w (dense: x @ w^T; the Switch
// experts: a grouped GEMM).
// pre_activation / pre_linear (optional) receive project(wi or wi_0) and project(wi_1).
Tensor ffn_hidden(ModelConfig::Activation activation, const FeedForwardWeights& w,
                  const std::function<Tensor(const Tensor&)>& project,
                  Tensor* pre_activation = nullptr, Tensor* pre_linear = nullptr);

struct FeedForwardCache {
  Tensor pre_activation, pre_linear, hidden;  // hidden: after activation and dropout
};

Tensor feed_forward(const FeedForwardWeights& w, ModelConfig::Activation activation,
                    const Tensor& x, const ops::DropoutSpec& inner_dropout,
                    FeedForwardCache* cache = nullptr);

// Backward from dy: returns dx and adds the weight gradients to `grads`.
// d(loss)/d(pre-activation) of an ungated activation from dy and the forward's input.
Tensor activation_backward(ModelConfig::Activation activation, const Tensor& dy,
                           const Tensor& pre_activation);

Tensor feed_forward_backward(const FeedForwardWeights& w, ModelConfig::Activation activation,
                             const Tensor& x, const ops::DropoutSpec& inner_dropout,
                             const FeedForwardCache& cache, const Tensor& dy,
                             FeedForwardWeights& grads);

}  // namespace sw
