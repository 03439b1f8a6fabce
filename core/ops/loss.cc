#include "core/ops/loss.h"

#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/loss.cuh"

namespace sw::ops {
namespace {

// Labels on the host, checked against [N] rows of `vocab` classes; returns the count of
// rows that are not ignored.
int64_t check_labels(const Tensor& labels, int64_t n, int64_t vocab, int32_t ignore_index,
                     const char* op) {
  const std::string what = std::string(op) + ": labels";
  check_shape(labels, {n}, what.c_str());
  check_dtype(labels, DType::i32, what.c_str());
  const int32_t* pl = labels.data<int32_t>();
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) {
    SW_CHECK(pl[i] == ignore_index || (pl[i] >= 0 && pl[i] < vocab), Status::kOutOfRange, op,
             ": label ", pl[i], " at position ", i, " is outside [0, ", vocab,
             ") and is not the ignore index ", ignore_index);
    count += pl[i] != ignore_index;
  }
  return count;
}

Tensor loss_rows(const Tensor& logits, const Tensor& labels, int32_t ignore_index) {
  if (on_cuda(logits))
    SW_RUN_ON_CUDA(kernels::cross_entropy_rows(logits, labels.to(logits.device()), ignore_index));
  return cpu::cross_entropy_rows(logits, labels, ignore_index);
}

}  // namespace

// The mean of the counted rows' losses, a serial f64 sum in row order.
double mean_of_counted(const Tensor& row_losses, const Tensor& labels, int64_t count,
                       int32_t ignore_index) {
  const Tensor rows = row_losses.to(Device::cpu()).to(DType::f64);
  const int32_t* pl = labels.data<int32_t>();
  const double* loss = rows.data<double>();
  double total = 0.0;
  for (int64_t i = 0; i < labels.numel(); ++i)
    if (pl[i] != ignore_index) total += loss[i];
  return count ? total / static_cast<double>(count) : 0.0;
}

// The teacher's probabilities beside the student's logits, and a weight in [0, 1].
void check_teacher(const Tensor& logits, const Tensor& teacher_probs, double teacher_weight,
                   const char* op) {
  SW_CHECK_ARG(logits.ndim() == 2, op, ": logits must be [N, V], got ", logits.str());
  SW_CHECK(!on_cuda(logits), Status::kUnsupported, op, ": runs on the cpu only, got logits on ",
           logits.device().str());
  check_shape(teacher_probs, logits.shape(), (std::string(op) + ": teacher_probs").c_str());
  check_dtype(teacher_probs, logits.dtype(), (std::string(op) + ": teacher_probs").c_str());
  SW_CHECK_ARG(teacher_probs.device() == logits.device(), op,
               ": teacher_probs must be on the logits' device");
  SW_CHECK_ARG(teacher_weight >= 0 && teacher_weight <= 1, op,
               ": teacher_weight must be in "
               "[0, 1], got ",
               teacher_weight);
}

CrossEntropy cross_entropy(const Tensor& logits, const Tensor& labels_in, int32_t ignore_index) {
  SW_CHECK_ARG(logits.ndim() == 2, "cross_entropy: logits must be [N, V], got ", logits.str());
  const Tensor labels = labels_in.to(Device::cpu());
  CrossEntropy result;
  result.count = check_labels(labels, logits.dim(0), logits.dim(1), ignore_index, "cross_entropy");
  result.loss =
      mean_of_counted(loss_rows(logits, labels, ignore_index), labels, result.count, ignore_index);
  return result;
}

CrossEntropy distillation_cross_entropy(const Tensor& logits, const Tensor& labels_in,
                                        const Tensor& teacher_probs, double teacher_weight,
                                        int32_t ignore_index) {
  constexpr const char* kOp = "distillation_cross_entropy";
  check_teacher(logits, teacher_probs, teacher_weight, kOp);
  const Tensor labels = labels_in.to(Device::cpu());
  CrossEntropy result;
  result.count = check_labels(labels, logits.dim(0), logits.dim(1), ignore_index, kOp);
  result.loss = mean_of_counted(cpu::distillation_cross_entropy_rows(logits, labels, teacher_probs,
                                                                     teacher_weight, ignore_index),
                                labels, result.count, ignore_index);
  return result;
}

Tensor distillation_cross_entropy_backward(const Tensor& logits, const Tensor& labels_in,
                                           const Tensor& teacher_probs, double teacher_weight,
                                           double scale, int32_t ignore_index) {
  constexpr const char* kOp = "distillation_cross_entropy backward";
  check_teacher(logits, teacher_probs, teacher_weight, kOp);
  const Tensor labels = labels_in.to(Device::cpu());
  check_labels(labels, logits.dim(0), logits.dim(1), ignore_index, kOp);
  return stored(cpu::distillation_cross_entropy_backward(logits, labels, teacher_probs,
                                                         teacher_weight, scale, ignore_index));
}

Tensor cross_entropy_backward(const Tensor& logits, const Tensor& labels, double scale,
                              int32_t ignore_index) {
  SW_CHECK_ARG(logits.ndim() == 2, "cross_entropy backward: logits must be [N, V], got ",
               logits.str());
  // Unused when CUDA is not built: the device call is then dropped.
  [[maybe_unused]] const int64_t count =
      check_labels(labels.to(Device::cpu()), logits.dim(0), logits.dim(1), ignore_index,
                   "cross_entropy backward");
  if (on_cuda(logits))
    SW_RUN_ON_CUDA(kernels::cross_entropy_backward(logits, labels.to(logits.device()),
                                                   count ? scale / static_cast<double>(count) : 0.0,
                                                   ignore_index));
  return stored(cpu::cross_entropy_backward(logits, labels, scale, ignore_index));
}

}  // namespace sw::ops
