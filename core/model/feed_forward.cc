#include "core/model/feed_forward.h"

#include "core/ops/activation.h"
#include "core/ops/elementwise.h"
#include "core/ops/gemm.h"

namespace sw {

Tensor ffn_hidden(ModelConfig::Activation activation, const FeedForwardWeights& w,
                  const std::function<Tensor(const Tensor&)>& project, Tensor* pre_activation,
                  Tensor* pre_linear) {
  const bool gated = activation == ModelConfig::GATED_GELU;
  const Tensor pre = project(gated ? w.wi_0 : w.wi);
  if (pre_activation) *pre_activation = pre;
  switch (activation) {
    case ModelConfig::RELU:
      return ops::relu(pre);
    case ModelConfig::GELU:
      return ops::gelu(pre);
    case ModelConfig::GELU_EXACT:
      return ops::gelu_exact(pre);
    case ModelConfig::GATED_GELU: {
      const Tensor linear = project(w.wi_1);
      if (pre_linear) *pre_linear = linear;
      return ops::gated_gelu(pre, linear);
    }
  }
  throw Error(Status::kInternal, "unknown activation");
}

Tensor activation_backward(ModelConfig::Activation activation, const Tensor& dy,
                           const Tensor& pre_activation) {
  switch (activation) {
    case ModelConfig::RELU:
      return ops::relu_backward(dy, pre_activation);
    case ModelConfig::GELU:
      return ops::gelu_backward(dy, pre_activation);
    case ModelConfig::GELU_EXACT:
      return ops::gelu_exact_backward(dy, pre_activation);
    case ModelConfig::GATED_GELU:
      break;
  }
  throw Error(Status::kInternal, "activation_backward: not an ungated activation");
}

Tensor feed_forward(const FeedForwardWeights& w, ModelConfig::Activation activation,
                    const Tensor& x, const ops::DropoutSpec& inner_dropout,
                    FeedForwardCache* cache) {
  Tensor pre, linear;
  Tensor hidden = ffn_hidden(
      activation, w, [&](const Tensor& weight) { return ops::linear(x, weight); }, &pre, &linear);
  ops::dropout_(hidden, inner_dropout);
  if (cache) *cache = {pre, linear, hidden};
  return ops::linear(hidden, w.wo);
}

Tensor feed_forward_backward(const FeedForwardWeights& w, ModelConfig::Activation activation,
                             const Tensor& x, const ops::DropoutSpec& inner_dropout,
                             const FeedForwardCache& cache, const Tensor& dy,
                             FeedForwardWeights& grads) {
  ops::linear_backward_weight(dy, cache.hidden, grads.wo, true);
  Tensor d_hidden = ops::linear_backward_input(dy, w.wo);
  ops::dropout_(d_hidden, inner_dropout);  // the same mask and scale: dropout is linear
  if (activation == ModelConfig::GATED_GELU) {
    Tensor d_pre, d_linear;
    ops::gated_gelu_backward(d_hidden, cache.pre_activation, cache.pre_linear, d_pre, d_linear);
    ops::linear_backward_weight(d_pre, x, grads.wi_0, true);
    ops::linear_backward_weight(d_linear, x, grads.wi_1, true);
    Tensor dx = ops::linear_backward_input(d_pre, w.wi_0);
    ops::add_(dx, ops::linear_backward_input(d_linear, w.wi_1));
    return dx;
  }
  const Tensor d_pre = activation_backward(activation, d_hidden, cache.pre_activation);
  ops::linear_backward_weight(d_pre, x, grads.wi, true);
  return ops::linear_backward_input(d_pre, w.wi);
}

}  // namespace sw
