#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/embedding.cuh"

namespace sw::kernels {
namespace {

template <typename T>
__global__ void embedding_kernel(const T* table, const int32_t* ids, T* out, int64_t d) {
  const int64_t t = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[t]) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) out[t * d + i] = src[i];
}

}  // namespace

Tensor embedding(const Tensor& table, const Tensor& ids) {
  const int64_t d = table.dim(1), n = ids.numel();
  Shape shape = ids.shape();
  shape.push_back(d);
  Tensor out = Tensor::empty(shape, table.dtype(), table.device());
  if (n == 0) return out;
  DeviceContext& ctx = device_context(table);
  dispatch_storage(table.dtype(), "embedding", [&](auto zero) {
    using T = decltype(zero);
    embedding_kernel<<<static_cast<unsigned>(n), 128, 0, ctx.stream>>>(
        static_cast<const T*>(table.raw()), static_cast<const int32_t*>(ids.raw()),
        static_cast<T*>(out.raw()), d);
  });
  SW_CUDA_CHECK_LAUNCH("embedding");
  return out;
}

}  // namespace sw::kernels
