// The smallest useful libswitch program in C++: build the `tiny` preset, run one forward
// pass with labels, print the losses and where the first sparse layer sent its tokens.
#include <cstdio>

#include "core/model/switch_transformer.h"

int main() {
  const sw::ModelConfig config = sw::preset("tiny");
  const sw::SwitchTransformer model(config, /*seed=*/42);

  // Two sequences: encoder input, decoder input (starts with decoder_start = 0), labels.
  sw::Batch batch;
  batch.input_ids = sw::Tensor::from_vector<int32_t>(
      {72, 101, 108, 108, 111, 1, 87, 111, 114, 108, 100, 1}, {2, 6});
  batch.decoder_input_ids = sw::Tensor::from_vector<int32_t>({0, 33, 34, 0, 35, 36}, {2, 3});
  batch.labels = sw::Tensor::from_vector<int32_t>({33, 34, 1, 35, 36, 1}, {2, 3});

  const sw::ForwardOutput out = model.forward(batch);
  std::printf("logits %s, loss %.4f (ce %.4f, aux %.5f, z %.5f)\n", out.logits.str().c_str(),
              out.loss, out.ce_loss, out.aux_loss, out.z_loss);
  const sw::LayerRouting& first = out.routing.front();
  std::printf("%s block %lld: tokens per expert:", sw::stack_name(first.stack),
              static_cast<long long>(first.block));
  for (int64_t n : first.stats.tokens_per_expert) std::printf(" %lld", static_cast<long long>(n));
  std::printf("\n");
  return 0;
}
