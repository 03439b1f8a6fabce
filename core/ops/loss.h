// Cross-entropy over the vocabulary with an ignore index.
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace sw::ops {

constexpr int32_t kIgnoreIndex = -100;

struct CrossEntropy {
  double loss = 0.0;  // mean over counted tokens (0 when none counts)
  int64_t count = 0;  // tokens whose label is not the ignore index
};

// logits [N, V], labels i32 [N]. A label outside [0, V) other than the ignore index is
// an out-of-range error naming its position.
CrossEntropy cross_entropy(const Tensor& logits, const Tensor& labels,
                           int32_t ignore_index = kIgnoreIndex);

// Gradient of the mean loss times `scale` w.r.t. the logits: (softmax - onehot) * scale /
// count on counted rows, 0 on ignored ones.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double scale = 1.0,
                              int32_t ignore_index = kIgnoreIndex);

}  // namespace sw::ops
