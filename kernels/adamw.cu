#include <cmath>

#include "kernels/adamw.cuh"
#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"

namespace sw::kernels {
namespace {

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, double beta1,
                             double beta2, double eps, double weight_decay, double lr, double c1,
                             double c2) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= n) return;
  const double gj = g[j];
  m[j] = static_cast<float>(beta1 * m[j] + (1 - beta1) * gj);
  v[j] = static_cast<float>(beta2 * v[j] + (1 - beta2) * gj * gj);
  const double step_dir = (m[j] / c1) / (sqrt(v[j] / c2) + eps);
  p[j] = static_cast<float>(p[j] - lr * (step_dir + weight_decay * p[j]));
}

}  // namespace

void adamw_update(Tensor& parameter, const Tensor& gradient, Tensor& m, Tensor& v,
                  const AdamWOptions& o, double lr, double c1, double c2) {
  const int64_t n = parameter.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(parameter);
  adamw_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
      static_cast<float*>(parameter.raw()), static_cast<const float*>(gradient.raw()),
      static_cast<float*>(m.raw()), static_cast<float*>(v.raw()), n, o.beta1, o.beta2, o.eps,
      o.weight_decay, lr, c1, c2);
  SW_CUDA_CHECK_LAUNCH("adamw");
}

}  // namespace sw::kernels
