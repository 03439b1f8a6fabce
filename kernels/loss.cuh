// Cross-entropy on CUDA behind core/ops/loss.h: the per-row loss and its gradient, one block
// per row. f32 and bf16 logits, accumulated in f32.
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace sw::kernels {

// logits [N, V], labels i32 [N]: per-row loss f32 [N], 0 where the label is ignored.
Tensor cross_entropy_rows(const Tensor& logits, const Tensor& labels, int32_t ignore_index);
// (softmax - onehot) * factor on rows whose label counts, 0 on ignored rows; [N, V] in the
// logits' dtype. factor: the caller's scale / the count of counted rows.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double factor,
                              int32_t ignore_index);

}  // namespace sw::kernels
