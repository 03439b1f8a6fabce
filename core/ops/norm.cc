#include "core/ops/norm.h"

#include "core/ops/checks.h"
#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/norm.cuh"

namespace sw::ops {

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor* inv_rms) {
  check_shape(weight, {last_dim(x)}, "rms_norm: weight");
  check_dtype(weight, x.dtype(), "rms_norm: weight");
  SW_CHECK_ARG(eps > 0, "rms_norm: eps must be > 0, got ", eps);
  check_same_device({&x, &weight}, "rms_norm");
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::rms_norm(x, weight, eps, inv_rms));
  return stored(cpu::rms_norm(x, weight, eps, inv_rms));
}

Tensor rms_norm_backward(const Tensor& dy, const Tensor& x, const Tensor& weight,
                         const Tensor& inv_rms, Tensor& dweight) {
  const int64_t d = last_dim(x), rows = leading_rows(x);
  check_shape(dy, x.shape(), "rms_norm backward: dy");
  check_shape(inv_rms, {rows}, "rms_norm backward: inv_rms");
  check_shape(dweight, {d}, "rms_norm backward: dweight");
  check_same_device({&x, &dy, &weight, &inv_rms, &dweight}, "rms_norm backward");
  check_dtype(dy, x.dtype(), "rms_norm backward: dy");
  check_dtype(weight, x.dtype(), "rms_norm backward: weight");
  check_gradient_dtype(dweight, weight, "rms_norm backward: dweight");
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::rms_norm_backward(dy, x, weight, inv_rms, dweight));
  return stored(cpu::rms_norm_backward(dy, x, weight, inv_rms, dweight));
}

}  // namespace sw::ops
