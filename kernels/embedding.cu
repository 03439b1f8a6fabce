#include <algorithm>
#include <numeric>
#include <vector>

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

// Block (b, column chunk): the distinct id rows[b], whose tokens are positions[first[b] ..
// first[b + 1]) in token order.
template <typename T, typename G>
__global__ void embedding_backward_kernel(const T* dy, const int32_t* rows, const int64_t* first,
                                          const int64_t* positions, G* dtable, int64_t d) {
  const int64_t b = blockIdx.x, i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (i >= d) return;
  const int64_t row = rows[b];
  float sum = load(dtable, row * d + i);
  for (int64_t k = first[b]; k < first[b + 1]; ++k) sum += load(dy, positions[k] * d + i);
  store(dtable, row * d + i, sum);
}

}  // namespace

void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable) {
  const int64_t d = dtable.dim(1), n = ids.numel();
  if (n == 0 || d == 0) return;
  // Group the token positions by id (stable: token order within an id).
  const Tensor host_ids = ids.to(Device::cpu());
  const int32_t* id = host_ids.data<int32_t>();
  std::vector<int64_t> positions(static_cast<size_t>(n));
  std::iota(positions.begin(), positions.end(), int64_t{0});
  std::stable_sort(positions.begin(), positions.end(),
                   [&](int64_t a, int64_t b) { return id[a] < id[b]; });
  std::vector<int32_t> rows;
  std::vector<int64_t> first;
  for (int64_t k = 0; k < n; ++k)
    if (k == 0 || id[positions[k]] != id[positions[k - 1]]) {
      rows.push_back(id[positions[k]]);
      first.push_back(k);
    }
  first.push_back(n);
  const Tensor rows_d =
      Tensor::from_vector(rows, {static_cast<int64_t>(rows.size())}).to(dtable.device());
  const Tensor first_d =
      Tensor::from_vector(first, {static_cast<int64_t>(first.size())}).to(dtable.device());
  const Tensor positions_d = Tensor::from_vector(positions, {n}).to(dtable.device());
  DeviceContext& ctx = device_context(dtable);
  const dim3 grid(static_cast<unsigned>(rows.size()),
                  static_cast<unsigned>((d + kThreads - 1) / kThreads));
  dispatch_data_and_gradient(
      dy.dtype(), dtable.dtype(), "embedding backward", [&](auto zero, auto grad_zero) {
        using T = decltype(zero);
        using G = decltype(grad_zero);
        embedding_backward_kernel<<<grid, kThreads, 0, ctx.stream>>>(
            static_cast<const T*>(dy.raw()), static_cast<const int32_t*>(rows_d.raw()),
            static_cast<const int64_t*>(first_d.raw()),
            static_cast<const int64_t*>(positions_d.raw()), static_cast<G*>(dtable.raw()), d);
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
