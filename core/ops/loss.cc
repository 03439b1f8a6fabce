#include "core/ops/loss.h"

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

CrossEntropy cross_entropy(const Tensor& logits, const Tensor& labels_in, int32_t ignore_index) {
  SW_CHECK_ARG(logits.ndim() == 2, "cross_entropy: logits must be [N, V], got ", logits.str());
  const Tensor labels = labels_in.to(Device::cpu());
  const int64_t n = logits.dim(0);
  CrossEntropy result;
  result.count = check_labels(labels, n, logits.dim(1), ignore_index, "cross_entropy");
  const Tensor rows = loss_rows(logits, labels, ignore_index).to(Device::cpu()).to(DType::f64);
  const int32_t* pl = labels.data<int32_t>();
  const double* loss = rows.data<double>();
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (pl[i] != ignore_index) total += loss[i];
  result.loss = result.count ? total / static_cast<double>(result.count) : 0.0;
  return result;
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
  return cpu::cross_entropy_backward(logits, labels, scale, ignore_index);
}

}  // namespace sw::ops
