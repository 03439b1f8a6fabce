// Cross-entropy over the vocabulary with an ignore index (docs/MATH.md §1: labels -100 are
// ignored).
#pragma once

#include <cstdint>

#include "core/tensor/tensor.h"

namespace sw::ops {

constexpr int32_t kIgnoreIndex = -100;

struct CrossEntropy {
  double loss = 0.0;  // mean over counted tokens (0 when none counts)
  int64_t count = 0;  // tokens whose label is not the ignore index
};

// logits [N, V] (f32/f64 on the cpu, f32/bf16 on a GPU), labels i32 [N] on the host or the
// logits' device. Each row's loss is logsumexp(row) - row[label], accumulated in f64 on the
// cpu (f32 on a GPU); the mean is a serial f64 sum in row order, so it does not depend on
// the thread count. A label outside [0, V) other than the ignore index is an out-of-range
// error naming its position.
CrossEntropy cross_entropy(const Tensor& logits, const Tensor& labels,
                           int32_t ignore_index = kIgnoreIndex);

// Gradient of the mean loss times `scale` w.r.t. the logits: (softmax - onehot) * scale /
// count on counted rows, 0 on ignored ones; [N, V] in the logits' dtype.
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double scale = 1.0,
                              int32_t ignore_index = kIgnoreIndex);

// The Eigen implementations behind the device switch (loss.cc); labels checked there.
namespace cpu {
// Per-row losses, f64 [N], 0 on ignored rows.
Tensor cross_entropy_rows(const Tensor& logits, const Tensor& labels, int32_t ignore_index);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double scale,
                              int32_t ignore_index);
}  // namespace cpu

}  // namespace sw::ops
