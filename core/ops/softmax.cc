#include "core/ops/softmax.h"

#include "core/ops/checks.h"
#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/softmax.cuh"

namespace sw::ops {

void softmax_(Tensor& x) {
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::softmax_(x));
  cpu::softmax_(x);
  stored(x);
}

Tensor softmax(const Tensor& x) {
  Tensor y = x.clone();
  softmax_(y);
  return y;
}

Tensor logsumexp(const Tensor& x) {
  SW_CHECK_ARG(x.ndim() >= 1, "logsumexp: expected at least one dimension, got ", x.str());
  SW_CHECK_ARG(x.dim(-1) > 0, "logsumexp: empty last dimension in ", x.str());
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::logsumexp(x));
  return cpu::logsumexp(x);
}

Tensor softmax_backward(const Tensor& dp, const Tensor& p) {
  check_shape(dp, p.shape(), "softmax backward: dp");
  check_same_device({&p, &dp}, "softmax backward");
  if (on_cuda(p)) SW_RUN_ON_CUDA(kernels::softmax_backward(dp, p));
  return stored(cpu::softmax_backward(dp, p));
}

}  // namespace sw::ops
