#include <string>

#include "kernels/convert.cuh"
#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"

namespace sw::kernels {
namespace {

template <typename In, typename Out>
__global__ void convert_kernel(const In* in, Out* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) store(out, i, load(in, i));
}

__global__ void split_bf16x3_kernel(const float* w, __nv_bfloat16* hi, __nv_bfloat16* mid,
                                    __nv_bfloat16* lo, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = w[i];
  hi[i] = __float2bfloat16(v);
  const float r = v - __bfloat162float(hi[i]);
  mid[i] = __float2bfloat16(r);
  lo[i] = __float2bfloat16(r - __bfloat162float(mid[i]));
}

}  // namespace

void convert(const Tensor& src, Tensor& dst) {
  const int64_t n = src.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(src);
  const DType from = src.dtype(), to = dst.dtype();
  const unsigned blocks = blocks_for(n);
  if (from == DType::f32 && to == DType::bf16)
    convert_kernel<<<blocks, kThreads, 0, ctx.stream>>>(static_cast<const float*>(src.raw()),
                                                        static_cast<__nv_bfloat16*>(dst.raw()), n);
  else if (from == DType::bf16 && to == DType::f32)
    convert_kernel<<<blocks, kThreads, 0, ctx.stream>>>(
        static_cast<const __nv_bfloat16*>(src.raw()), static_cast<float*>(dst.raw()), n);
  else if (from == DType::f32 && to == DType::f64)
    convert_kernel<<<blocks, kThreads, 0, ctx.stream>>>(static_cast<const float*>(src.raw()),
                                                        static_cast<double*>(dst.raw()), n);
  else if (from == DType::f64 && to == DType::f32)
    convert_kernel<<<blocks, kThreads, 0, ctx.stream>>>(static_cast<const double*>(src.raw()),
                                                        static_cast<float*>(dst.raw()), n);
  else
    throw Error(Status::kUnsupported, std::string("convert: ") + dtype_name(from) + " to " +
                                          dtype_name(to) + " is not supported on cuda");
  SW_CUDA_CHECK_LAUNCH("convert");
}

void split_bf16x3(const Tensor& w, Tensor& hi, Tensor& mid, Tensor& lo) {
  check_dtype(w, DType::f32, "split_bf16x3");
  const int64_t n = w.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(w);
  split_bf16x3_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
      static_cast<const float*>(w.raw()), static_cast<__nv_bfloat16*>(hi.raw()),
      static_cast<__nv_bfloat16*>(mid.raw()), static_cast<__nv_bfloat16*>(lo.raw()), n);
  SW_CUDA_CHECK_LAUNCH("split_bf16x3");
}

}  // namespace sw::kernels
