#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/dropout.cuh"

namespace sw::kernels {
namespace {

// Where element i of a part draws from: DropoutSpec::element on the device.
struct PartOfStream {
  uint64_t window, stride, offset;
  __device__ uint64_t element(uint64_t i) const {
    return window ? i / window * stride + offset + i % window : i;
  }
};

PartOfStream part_of(const ops::DropoutSpec& spec) {
  return {spec.window, spec.stride, spec.offset};
}

template <typename T>
__global__ void dropout_kernel(T* x, int64_t n, RandomStream stream, PartOfStream part, float rate,
                               float scale) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n)
    store(
        x, i,
        stream.uniform(part.element(static_cast<uint64_t>(i))) >= rate ? load(x, i) * scale : 0.0f);
}

template <typename T>
__global__ void dropout_rows_kernel(T* x, int64_t rows, int64_t width, const int64_t* stream_rows,
                                    RandomStream stream, PartOfStream part, float rate,
                                    float scale) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * width) return;
  const uint64_t element = static_cast<uint64_t>(stream_rows[i / width]) * width + i % width;
  store(x, i, stream.uniform(part.element(element)) >= rate ? load(x, i) * scale : 0.0f);
}

}  // namespace

void dropout(Tensor& x, const ops::DropoutSpec& spec) {
  const int64_t n = x.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "dropout", [&](auto zero) {
    using T = decltype(zero);
    dropout_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
        static_cast<T*>(x.raw()), n, spec.stream, part_of(spec), static_cast<float>(spec.rate),
        static_cast<float>(1.0 / (1.0 - spec.rate)));
  });
  SW_CUDA_CHECK_LAUNCH("dropout");
}

void dropout_rows(Tensor& x, const ops::DropoutSpec& spec, const Tensor& stream_rows) {
  const int64_t rows = x.dim(0), width = x.dim(1);
  if (rows == 0) return;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "dropout", [&](auto zero) {
    using T = decltype(zero);
    dropout_rows_kernel<<<blocks_for(rows * width), kThreads, 0, ctx.stream>>>(
        static_cast<T*>(x.raw()), rows, width, static_cast<const int64_t*>(stream_rows.raw()),
        spec.stream, part_of(spec), static_cast<float>(spec.rate),
        static_cast<float>(1.0 / (1.0 - spec.rate)));
  });
  SW_CUDA_CHECK_LAUNCH("dropout_rows");
}

}  // namespace sw::kernels
