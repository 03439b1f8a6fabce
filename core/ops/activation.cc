#include "core/ops/activation.h"

#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/activation.cuh"

namespace sw::ops {
namespace {

// a and b share shape, dtype and device (an elementwise pair).
void check_pair(const Tensor& a, const Tensor& b, const char* op, const char* a_name,
                const char* b_name) {
  SW_CHECK_ARG(a.shape() == b.shape() && a.dtype() == b.dtype() && a.device() == b.device(), op,
               ": ", a_name, " ", a.str(), " and ", b_name, " ", b.str(), " differ");
}

}  // namespace

Tensor relu(const Tensor& x) {
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::relu(x));
  return stored(cpu::relu(x));
}

Tensor gelu(const Tensor& x) {
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::gelu(x));
  return stored(cpu::gelu(x));
}

Tensor gelu_exact(const Tensor& x) {
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::gelu_exact(x));
  return stored(cpu::gelu_exact(x));
}

Tensor gated_gelu(const Tensor& gate, const Tensor& linear) {
  check_pair(gate, linear, "gated_gelu", "gate", "linear");
  if (on_cuda(gate)) SW_RUN_ON_CUDA(kernels::gated_gelu(gate, linear));
  return stored(cpu::gated_gelu(gate, linear));
}

Tensor relu_backward(const Tensor& dy, const Tensor& x) {
  check_pair(dy, x, "relu backward", "dy", "x");
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::relu_backward(dy, x));
  return stored(cpu::relu_backward(dy, x));
}

Tensor gelu_backward(const Tensor& dy, const Tensor& x) {
  check_pair(dy, x, "gelu backward", "dy", "x");
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::gelu_backward(dy, x));
  return stored(cpu::gelu_backward(dy, x));
}

Tensor gelu_exact_backward(const Tensor& dy, const Tensor& x) {
  check_pair(dy, x, "gelu_exact backward", "dy", "x");
  if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::gelu_exact_backward(dy, x));
  return stored(cpu::gelu_exact_backward(dy, x));
}

void gated_gelu_backward(const Tensor& dy, const Tensor& gate, const Tensor& linear, Tensor& dgate,
                         Tensor& dlinear) {
  check_pair(gate, linear, "gated_gelu backward", "gate", "linear");
  check_pair(dy, gate, "gated_gelu backward", "dy", "gate");
  if (on_cuda(gate)) SW_RUN_ON_CUDA(kernels::gated_gelu_backward(dy, gate, linear, dgate, dlinear));
  cpu::gated_gelu_backward(dy, gate, linear, dgate, dlinear);
  stored(dgate);
  stored(dlinear);
}

}  // namespace sw::ops
