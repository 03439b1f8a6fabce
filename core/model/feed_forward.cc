#include "core/model/feed_forward.h"

#include "core/ops/activation.h"
#include "core/ops/gemm.h"

namespace sw {

Tensor ffn_activation(ModelConfig::Activation activation, const Tensor& h, const Tensor* h_linear) {
  switch (activation) {
    case ModelConfig::RELU:
      return ops::relu(h);
    case ModelConfig::GELU:
      return ops::gelu(h);
    case ModelConfig::GATED_GELU:
      SW_CHECK(h_linear != nullptr, Status::kInternal, "GATED_GELU needs the linear branch");
      return ops::gated_gelu(h, *h_linear);
  }
  throw Error(Status::kInternal, "unknown activation");
}

Tensor feed_forward(const FeedForwardWeights& w, ModelConfig::Activation activation,
                    const Tensor& x, const ops::DropoutSpec& inner_dropout) {
  Tensor hidden;
  if (activation == ModelConfig::GATED_GELU) {
    const Tensor h_linear = ops::linear(x, w.wi_1);
    hidden = ffn_activation(activation, ops::linear(x, w.wi_0), &h_linear);
  } else {
    hidden = ffn_activation(activation, ops::linear(x, w.wi), nullptr);
  }
  ops::dropout_(hidden, inner_dropout);
  return ops::linear(hidden, w.wo);
}

}  // namespace sw
