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

// Distillation's loss (docs/MATH.md §5, paper §4.2): on each counted row the cross-entropy
// against the mixed target (1 - w) onehot(label) + w q, where q [N, V] holds the teacher's
// probabilities (rows summing to 1, the logits' dtype and device), i.e.
// (1 - w) (logsumexp - x[label]) + w (logsumexp - sum_v q_v x_v); the mean over counted
// rows as cross_entropy. w in [0, 1]; w = 0 is cross_entropy. CPU only (a GPU tensor is a
// kUnsupported error naming the op).
CrossEntropy distillation_cross_entropy(const Tensor& logits, const Tensor& labels,
                                        const Tensor& teacher_probs, double teacher_weight,
                                        int32_t ignore_index = kIgnoreIndex);
// Its gradient times `scale` w.r.t. the logits: (softmax - (1 - w) onehot - w q) * scale /
// count on counted rows, 0 on ignored ones.
Tensor distillation_cross_entropy_backward(const Tensor& logits, const Tensor& labels,
                                           const Tensor& teacher_probs, double teacher_weight,
                                           double scale = 1.0, int32_t ignore_index = kIgnoreIndex);

// The Eigen implementations behind the device switch (loss.cc); labels checked there.
namespace cpu {
// Per-row losses, f64 [N], 0 on ignored rows.
Tensor cross_entropy_rows(const Tensor& logits, const Tensor& labels, int32_t ignore_index);
Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double scale,
                              int32_t ignore_index);
// Per-row losses against the mixed target, f64 [N]; and the gradient.
Tensor distillation_cross_entropy_rows(const Tensor& logits, const Tensor& labels,
                                       const Tensor& teacher_probs, double teacher_weight,
                                       int32_t ignore_index);
Tensor distillation_cross_entropy_backward(const Tensor& logits, const Tensor& labels,
                                           const Tensor& teacher_probs, double teacher_weight,
                                           double scale, int32_t ignore_index);
}  // namespace cpu

}  // namespace sw::ops
