// Builds against an installed libswitch and runs one forward pass of the tiny preset.
#include <cmath>
#include <cstdio>

#include "core/model/switch_transformer.h"

int main() {
  const sw::SwitchTransformer model(sw::preset("tiny"), 1);
  sw::Batch batch;
  batch.input_ids = sw::Tensor::from_vector<int32_t>({10, 11, 12, 1}, {1, 4});
  batch.decoder_input_ids = sw::Tensor::from_vector<int32_t>({0, 20}, {1, 2});
  batch.labels = sw::Tensor::from_vector<int32_t>({20, 1}, {1, 2});
  const sw::ForwardOutput out = model.forward(batch);
  std::printf("installed libswitch: loss %.4f over %zu sparse layers\n", out.loss,
              out.routing.size());
  return std::isfinite(out.loss) ? 0 : 1;
}
