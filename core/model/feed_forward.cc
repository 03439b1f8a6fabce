#include "core/model/feed_forward.h"

#include "core/ops/activation.h"
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
    case ModelConfig::GATED_GELU: {
      const Tensor linear = project(w.wi_1);
      if (pre_linear) *pre_linear = linear;
      return ops::gated_gelu(pre, linear);
    }
  }
  throw Error(Status::kInternal, "unknown activation");
}

Tensor feed_forward(const FeedForwardWeights& w, ModelConfig::Activation activation,
                    const Tensor& x, const ops::DropoutSpec& inner_dropout) {
  Tensor hidden =
      ffn_hidden(activation, w, [&](const Tensor& weight) { return ops::linear(x, weight); });
  ops::dropout_(hidden, inner_dropout);
  return ops::linear(hidden, w.wo);
}

}  // namespace sw
