#include <cub/device/device_scan.cuh>

#include "kernels/capacity.cuh"
#include "kernels/cuda_types.cuh"
#include "kernels/device.cuh"
#include "kernels/device_context.h"
#include "kernels/routing_rows.cuh"

namespace sw::kernels {
namespace {

// One warp per group (routing_rows.cuh).
__global__ void count_in_groups_kernel(const int32_t* index, int32_t* position, int64_t* kept,
                                       int64_t groups, int64_t group_size, int64_t experts,
                                       int64_t capacity) {
  extern __shared__ int64_t counts[];  // [experts]
  count_group_positions(index, position, kept, counts, blockIdx.x, groups, group_size, experts,
                        capacity, threadIdx.x);
}

// totals[e] = sum over groups of kept[e * G + g]: what the host needs, in one small copy.
__global__ void expert_totals_kernel(const int64_t* kept, int64_t* totals, int64_t experts,
                                     int64_t groups) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= experts) return;
  int64_t total = 0;
  for (int64_t g = 0; g < groups; ++g) total += kept[e * groups + g];
  totals[e] = total;
}

// base[e * G + g]: rows before (e, g) in the grouped layout (exclusive scan of kept).
// position[t]: the token's place among its expert's kept tokens of its group, or -1.
__global__ void place_kernel(const int32_t* index, const int32_t* position, const int64_t* base,
                             int32_t* slot, int32_t* row, int64_t n, int64_t groups,
                             int64_t group_size) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const int64_t e = index[t], g = t / group_size;
  if (position[t] < 0) {
    slot[t] = row[t] = -1;
    return;
  }
  const int64_t r = base[e * groups + g] + position[t];
  row[t] = static_cast<int32_t>(r);
  slot[t] = static_cast<int32_t>(r - base[e * groups]);
}

__global__ void fill_kernel(int64_t* out, int64_t n, int64_t value) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = value;
}

// Each kept assignment i (token i / k) writes its token into its row: rows are distinct.
__global__ void row_tokens_kernel(const int32_t* row, int64_t* out, int64_t n, int64_t k,
                                  int64_t first_token) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n && row[i] >= 0) out[row[i]] = i / k + first_token;
}

__global__ void padded_rows_kernel(const int32_t* index, const int32_t* slot, int32_t* padded,
                                   int64_t n, int64_t rows_per_expert) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n)
    padded[t] = slot[t] < 0 ? -1 : static_cast<int32_t>(index[t] * rows_per_expert + slot[t]);
}

}  // namespace

ops::CapacityAssignment assign_capacity(const Tensor& expert_index, int64_t experts,
                                        int64_t group_size, int64_t capacity, int64_t fixed_rows) {
  const int64_t n = expert_index.numel(), groups = n / group_size;
  const Device dev = expert_index.device();
  if (n == 0) {  // no tokens: no blocks to launch
    ops::CapacityAssignment a;
    a.capacity = capacity;
    a.slot = Tensor::empty({0, 1}, DType::i32, dev);
    a.row = Tensor::empty({0, 1}, DType::i32, dev);
    a.kept_per_expert.assign(experts, 0);
    a.expert_offset.assign(experts + 1, 0);
    for (int64_t e = 0; e <= experts; ++e) a.expert_offset[e] = e * fixed_rows;
    return a;
  }
  DeviceContext& ctx = device_context(expert_index);
  Tensor position = Tensor::empty({n}, DType::i32, dev);
  Tensor kept = Tensor::empty({experts * groups}, DType::i64, dev);
  const size_t shared_bytes = static_cast<size_t>(experts) * sizeof(int64_t);
  SW_CHECK(shared_bytes <= 48 * 1024, Status::kUnsupported, "assign_capacity: ", experts,
           " experts exceed the 6144 the capacity kernel's shared counters hold");
  count_in_groups_kernel<<<static_cast<unsigned>(groups), 32, shared_bytes, ctx.stream>>>(
      static_cast<const int32_t*>(expert_index.raw()), static_cast<int32_t*>(position.raw()),
      static_cast<int64_t*>(kept.raw()), groups, group_size, experts, capacity);
  SW_CUDA_CHECK_LAUNCH("count_in_groups");
  return place_tokens(expert_index, position, kept, experts, group_size, capacity, fixed_rows);
}

ops::CapacityAssignment place_tokens(const Tensor& expert_index, const Tensor& position,
                                     const Tensor& kept, int64_t experts, int64_t group_size,
                                     int64_t capacity, int64_t fixed_rows) {
  const int64_t n = expert_index.numel(), groups = n / group_size;
  const Device dev = expert_index.device();
  DeviceContext& ctx = device_context(expert_index);
  Tensor slot = Tensor::empty({n}, DType::i32, dev);
  Tensor row = Tensor::empty({n}, DType::i32, dev);
  Tensor base = Tensor::empty({experts * groups}, DType::i64, dev);
  size_t scratch_bytes = 0;
  SW_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(
      nullptr, scratch_bytes, static_cast<const int64_t*>(kept.raw()),
      static_cast<int64_t*>(base.raw()), experts * groups, ctx.stream));
  Tensor scratch = Tensor::empty({static_cast<int64_t>(scratch_bytes + 3) / 4}, DType::i32, dev);
  SW_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(
      scratch.raw(), scratch_bytes, static_cast<const int64_t*>(kept.raw()),
      static_cast<int64_t*>(base.raw()), experts * groups, ctx.stream));
  place_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
      static_cast<const int32_t*>(expert_index.raw()), static_cast<const int32_t*>(position.raw()),
      static_cast<const int64_t*>(base.raw()), static_cast<int32_t*>(slot.raw()),
      static_cast<int32_t*>(row.raw()), n, groups, group_size);
  SW_CUDA_CHECK_LAUNCH("place");
  // The host needs the block sizes (buffer shapes, GEMM sizes): one small copy back.
  Tensor totals = Tensor::empty({experts}, DType::i64, dev);
  expert_totals_kernel<<<blocks_for(experts), kThreads, 0, ctx.stream>>>(
      static_cast<const int64_t*>(kept.raw()), static_cast<int64_t*>(totals.raw()), experts,
      groups);
  SW_CUDA_CHECK_LAUNCH("expert_totals");
  ops::CapacityAssignment a;
  a.capacity = capacity;
  a.slot = slot.view({n, 1});
  if (fixed_rows > 0) {
    a.row = padded_rows(expert_index, slot, fixed_rows).view({n, 1});
    a.expert_offset.resize(experts + 1);
    for (int64_t e = 0; e <= experts; ++e) a.expert_offset[e] = e * fixed_rows;
    a.device_kept = totals;
    a.dropped = -1;
    return a;
  }
  a.row = row.view({n, 1});
  a.kept_per_expert.assign(experts, 0);
  kernels::copy_bytes(a.kept_per_expert.data(), Device::cpu(), totals.raw(), dev,
                      experts * sizeof(int64_t));
  a.expert_offset.assign(experts + 1, 0);
  for (int64_t e = 0; e < experts; ++e)
    a.expert_offset[e + 1] = a.expert_offset[e] + a.kept_per_expert[e];
  a.dropped = n - a.expert_offset[experts];
  return a;
}

Tensor row_tokens(const Tensor& row, int64_t rows, int64_t first_token) {
  Tensor out = Tensor::empty({rows}, DType::i64, row.device());
  const int64_t n = row.numel(), k = row.ndim() == 2 ? row.dim(1) : 1;
  if (rows == 0) return out;
  DeviceContext& ctx = device_context(row);
  fill_kernel<<<blocks_for(rows), kThreads, 0, ctx.stream>>>(static_cast<int64_t*>(out.raw()), rows,
                                                             first_token);
  SW_CUDA_CHECK_LAUNCH("row_tokens: fill");
  if (n > 0) {
    row_tokens_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
        static_cast<const int32_t*>(row.raw()), static_cast<int64_t*>(out.raw()), n, k,
        first_token);
    SW_CUDA_CHECK_LAUNCH("row_tokens");
  }
  return out;
}

Tensor padded_rows(const Tensor& expert_index, const Tensor& slot, int64_t rows_per_expert) {
  const int64_t n = slot.numel();
  Tensor padded = Tensor::empty({n}, DType::i32, slot.device());
  if (n == 0) return padded;
  DeviceContext& ctx = device_context(slot);
  padded_rows_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
      static_cast<const int32_t*>(expert_index.raw()), static_cast<const int32_t*>(slot.raw()),
      static_cast<int32_t*>(padded.raw()), n, rows_per_expert);
  SW_CUDA_CHECK_LAUNCH("padded_rows");
  return padded;
}

}  // namespace sw::kernels
