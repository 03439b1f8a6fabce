#include "core/ops/elementwise.h"

#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/elementwise.cuh"

namespace sw::ops {

void add_(Tensor& a, const Tensor& b) {
  SW_CHECK_ARG(a.shape() == b.shape() && a.dtype() == b.dtype() && a.device() == b.device(),
               "add: ", a.str(), " and ", b.str(), " differ");
  if (on_cuda(a)) SW_RUN_ON_CUDA(kernels::add_(a, b));
  cpu::add_(a, b);
  stored(a);
}

void scale_(Tensor& a, double s) {
  if (on_cuda(a)) SW_RUN_ON_CUDA(kernels::scale_(a, s));
  cpu::scale_(a, s);
  stored(a);
}

void round_to_bf16_(Tensor& a) {
  check_dtype(a, DType::f32, "round_to_bf16");
  if (on_cuda(a)) SW_RUN_ON_CUDA(kernels::round_to_bf16_(a));
  cpu::round_to_bf16_(a);
}

}  // namespace sw::ops
