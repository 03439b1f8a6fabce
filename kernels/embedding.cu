#include <cub/device/device_radix_sort.cuh>

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

__global__ void iota_kernel(int64_t* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = i;
}

// Block (b, column chunk) for position b of the ids sorted stably (each id's tokens in
// token order): the first position of its id sums that id's token gradients, in token
// order, into its row; every other position returns at once.
template <typename T, typename G>
__global__ void embedding_backward_kernel(const T* dy, const int32_t* sorted_ids,
                                          const int64_t* positions, G* dtable, int64_t n,
                                          int64_t d) {
  const int64_t b = blockIdx.x, i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (i >= d || (b > 0 && sorted_ids[b] == sorted_ids[b - 1])) return;
  const int64_t row = sorted_ids[b];
  float sum = load(dtable, row * d + i);
  for (int64_t k = b; k < n && sorted_ids[k] == row; ++k) sum += load(dy, positions[k] * d + i);
  store(dtable, row * d + i, sum);
}

}  // namespace

void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable) {
  const int64_t d = dtable.dim(1), n = ids.numel(), vocab = dtable.dim(0);
  if (n == 0 || d == 0) return;
  const Device dev = dtable.device();
  DeviceContext& ctx = device_context(dtable);
  // Group the token positions by id on the device (a stable radix sort of (id, position):
  // token order within an id), so the host neither waits nor copies.
  Tensor sorted_ids = Tensor::empty({n}, DType::i32, dev);
  Tensor positions = Tensor::empty({n}, DType::i64, dev);
  Tensor sorted_positions = Tensor::empty({n}, DType::i64, dev);
  iota_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(static_cast<int64_t*>(positions.raw()),
                                                          n);
  SW_CUDA_CHECK_LAUNCH("embedding backward: positions");
  int bits = 1;  // ids lie in [0, vocab): only their low bits need sorting
  while (bits < 31 && (int64_t{1} << bits) < vocab) ++bits;
  const int32_t* keys = static_cast<const int32_t*>(ids.raw());
  size_t scratch_bytes = 0;
  SW_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      nullptr, scratch_bytes, keys, static_cast<int32_t*>(sorted_ids.raw()),
      static_cast<const int64_t*>(positions.raw()), static_cast<int64_t*>(sorted_positions.raw()),
      n, 0, bits, ctx.stream));
  Tensor scratch = Tensor::empty({static_cast<int64_t>(scratch_bytes + 3) / 4}, DType::i32, dev);
  SW_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
      scratch.raw(), scratch_bytes, keys, static_cast<int32_t*>(sorted_ids.raw()),
      static_cast<const int64_t*>(positions.raw()), static_cast<int64_t*>(sorted_positions.raw()),
      n, 0, bits, ctx.stream));
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>((d + kThreads - 1) / kThreads));
  dispatch_data_and_gradient(
      dy.dtype(), dtable.dtype(), "embedding backward", [&](auto zero, auto grad_zero) {
        using T = decltype(zero);
        using G = decltype(grad_zero);
        embedding_backward_kernel<<<grid, kThreads, 0, ctx.stream>>>(
            static_cast<const T*>(dy.raw()), static_cast<const int32_t*>(sorted_ids.raw()),
            static_cast<const int64_t*>(sorted_positions.raw()), static_cast<G*>(dtable.raw()), n,
            d);
      });
  SW_CUDA_CHECK_LAUNCH("embedding backward");
}

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
