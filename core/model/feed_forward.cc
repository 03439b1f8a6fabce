#include "core/model/feed_forward.h"

#include "core/ops/activation.h"
#include "core/ops/gemm.h"

namespace sw {

Tensor ffn_hidden(ModelConfig::Activation activation, const FeedForwardWeights& w,
                  const std::function<Tensor(const Tensor&)>& project) {
  switch (activation) {
    case ModelConfig::RELU:
      return ops::relu(project(w.wi));
    case ModelConfig::GELU:
      return ops::gelu(project(w.wi));
    case ModelConfig::GATED_GELU:
      return ops::gated_gelu(project(w.wi_0), project(w.wi_1));
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
