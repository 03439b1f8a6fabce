#include "kernels/device_context.h"
#include "kernels/gradient_clipping.cuh"
#include "kernels/reduce.cuh"

namespace sw::kernels {

double sum_of_squares(const std::vector<Tensor>& xs) {
  if (xs.empty()) return 0.0;
  int64_t chunks = 0;
  for (const Tensor& x : xs) {
    check_dtype(x, DType::f32, "gradient norm on cuda");
    SW_CHECK_ARG(x.device() == xs[0].device(), "gradient norm: tensors on ", x.device().str(),
                 " and ", xs[0].device().str());
    chunks += chunks_for(x.numel());
  }
  DeviceContext& ctx = device_context(xs[0]);
  Tensor partial = Tensor::zeros({chunks + 1}, DType::f64, xs[0].device());
  double* p = static_cast<double*>(partial.raw());
  int64_t at = 0;
  for (const Tensor& x : xs) {
    if (x.numel() == 0) continue;
    chunk_sums_kernel<<<chunks_for(x.numel()), kThreads, 0, ctx.stream>>>(
        SquareOf<float>{static_cast<const float*>(x.raw())}, x.numel(), p + at);
    SW_CUDA_CHECK_LAUNCH("chunk_sums (gradient norm)");
    at += chunks_for(x.numel());
  }
  add_in_order(p, chunks, p + chunks, ctx.stream);
  return partial.slice(chunks, chunks + 1).to(Device::cpu()).item(0);
}

}  // namespace sw::kernels
