#include <cub/device/device_scan.cuh>

#include "kernels/cuda_types.cuh"
#include "kernels/device.cuh"
#include "kernels/device_context.h"
#include "kernels/routing.cuh"

namespace sw::kernels {
namespace {

__global__ void jitter_kernel(const float* x, float* out, int64_t n, RandomStream stream,
                              double eps) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = x[i] * static_cast<float>(1.0 - eps + 2.0 * eps * stream.uniform(i));
}

// One warp per token: max and argmax (ties to the lowest index), then the softmax.
__global__ void softmax_top1_kernel(const float* logits, float* probs, int32_t* index, float* gate,
                                    int64_t n, int64_t experts) {
  const int64_t token = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (token >= n) return;
  const float* row = logits + token * experts;
  float best = -INFINITY;
  int best_index = 0x7fffffff;
  for (int64_t e = lane; e < experts; e += 32) {
    const float v = row[e];
    if (v > best) {  // lanes visit increasing e: the first maximum wins within a lane
      best = v;
      best_index = static_cast<int>(e);
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(0xffffffffu, best, offset);
    const int i = __shfl_xor_sync(0xffffffffu, best_index, offset);
    if (v > best || (v == best && i < best_index)) {
      best = v;
      best_index = i;
    }
  }
  float sum = 0.0f;
  for (int64_t e = lane; e < experts; e += 32) sum += expf(row[e] - best);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  const float inv = 1.0f / sum;
  for (int64_t e = lane; e < experts; e += 32)
    probs[token * experts + e] = expf(row[e] - best) * inv;
  if (lane == 0) {
    index[token] = best_index;
    gate[token] = inv;  // exp(best - best) / sum
  }
}

// One thread per (expert e, group g): walks the group in token order, numbering e's
// tokens; those past the capacity get -1.
__global__ void count_in_groups_kernel(const int32_t* index, int32_t* position, int64_t* kept,
                                       int64_t groups, int64_t group_size, int64_t experts,
                                       int64_t capacity) {
  const int64_t id = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (id >= groups * experts) return;
  const int64_t e = id / groups, g = id % groups;
  int64_t count = 0;
  for (int64_t t = g * group_size; t < (g + 1) * group_size; ++t) {
    if (index[t] != e) continue;
    ++count;
    position[t] = count <= capacity ? static_cast<int32_t>(count - 1) : -1;
  }
  kept[e * groups + g] = count < capacity ? count : capacity;
}

// base[e * G + g]: rows before (e, g) in the grouped layout (exclusive scan of kept).
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

template <typename T>
__global__ void dispatch_kernel(const T* x, const int32_t* row, T* out, int64_t n, int64_t d) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * d) return;
  const int64_t t = i / d, r = row[t];
  if (r >= 0) out[r * d + i % d] = x[i];
}

template <typename T>
__global__ void combine_kernel(const T* expert_out, const int32_t* row, const float* gate, T* y,
                               int64_t n, int64_t d) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * d) return;
  const int64_t t = i / d, r = row[t];
  store(y, i, r >= 0 ? gate[t] * load(expert_out, r * d + i % d) : 0.0f);
}

template <typename T>
__global__ void dropout_rows_kernel(T* x, int64_t rows, int64_t width, const int64_t* stream_rows,
                                    RandomStream stream, float rate, float scale) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * width) return;
  const uint64_t element = static_cast<uint64_t>(stream_rows[i / width]) * width + i % width;
  store(x, i, stream.uniform(element) >= rate ? load(x, i) * scale : 0.0f);
}

}  // namespace

void jitter(const Tensor& x, Tensor& out, const RandomStream& stream, double eps) {
  check_dtype(x, DType::f32, "router jitter (the router runs in f32)");
  const int64_t n = x.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(x);
  jitter_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
      static_cast<const float*>(x.raw()), static_cast<float*>(out.raw()), n, stream, eps);
  SW_CUDA_CHECK_LAUNCH("jitter");
}

void softmax_top1(const Tensor& logits, Tensor& probs, Tensor& expert_index, Tensor& gate) {
  check_dtype(logits, DType::f32, "router (the router runs in f32)");
  const int64_t n = logits.dim(0), experts = logits.dim(1);
  if (n == 0) return;
  DeviceContext& ctx = device_context(logits);
  softmax_top1_kernel<<<blocks_for(n * 32), kThreads, 0, ctx.stream>>>(
      static_cast<const float*>(logits.raw()), static_cast<float*>(probs.raw()),
      static_cast<int32_t*>(expert_index.raw()), static_cast<float*>(gate.raw()), n, experts);
  SW_CUDA_CHECK_LAUNCH("softmax_top1");
}

DeviceAssignment assign_capacity(const Tensor& expert_index, int64_t experts, int64_t group_size,
                                 int64_t capacity) {
  const int64_t n = expert_index.numel(), groups = n / group_size;
  const Device dev = expert_index.device();
  DeviceContext& ctx = device_context(expert_index);
  DeviceAssignment a;
  a.slot = Tensor::empty({n}, DType::i32, dev);
  a.row = Tensor::empty({n}, DType::i32, dev);
  Tensor position = Tensor::empty({n}, DType::i32, dev);
  Tensor kept = Tensor::empty({experts * groups}, DType::i64, dev);
  Tensor base = Tensor::empty({experts * groups}, DType::i64, dev);
  const int32_t* index = static_cast<const int32_t*>(expert_index.raw());
  count_in_groups_kernel<<<blocks_for(experts * groups), kThreads, 0, ctx.stream>>>(
      index, static_cast<int32_t*>(position.raw()), static_cast<int64_t*>(kept.raw()), groups,
      group_size, experts, capacity);
  SW_CUDA_CHECK_LAUNCH("count_in_groups");
  size_t scratch_bytes = 0;
  SW_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(
      nullptr, scratch_bytes, static_cast<int64_t*>(kept.raw()), static_cast<int64_t*>(base.raw()),
      experts * groups, ctx.stream));
  Tensor scratch = Tensor::empty({static_cast<int64_t>(scratch_bytes + 3) / 4}, DType::i32, dev);
  SW_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(
      scratch.raw(), scratch_bytes, static_cast<int64_t*>(kept.raw()),
      static_cast<int64_t*>(base.raw()), experts * groups, ctx.stream));
  place_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
      index, static_cast<const int32_t*>(position.raw()), static_cast<const int64_t*>(base.raw()),
      static_cast<int32_t*>(a.slot.raw()), static_cast<int32_t*>(a.row.raw()), n, groups,
      group_size);
  SW_CUDA_CHECK_LAUNCH("place");
  // The host needs the block sizes (buffer shapes, GEMM sizes): one small copy back.
  std::vector<int64_t> kept_host(experts * groups), base_host(experts * groups);
  kernels::copy_bytes(kept_host.data(), Device::cpu(), kept.raw(), dev,
                      kept_host.size() * sizeof(int64_t));
  kernels::copy_bytes(base_host.data(), Device::cpu(), base.raw(), dev,
                      base_host.size() * sizeof(int64_t));
  a.kept_per_expert.assign(experts, 0);
  a.expert_offset.assign(experts + 1, 0);
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t g = 0; g < groups; ++g) a.kept_per_expert[e] += kept_host[e * groups + g];
    a.expert_offset[e + 1] = a.expert_offset[e] + a.kept_per_expert[e];
  }
  a.dropped = n - a.expert_offset[experts];
  return a;
}

Tensor dispatch(const Tensor& x, const Tensor& row, int64_t kept) {
  const int64_t n = x.dim(0), d = x.dim(1);
  Tensor out = Tensor::empty({kept, d}, x.dtype(), x.device());
  if (n == 0 || kept == 0) return out;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "dispatch", [&](auto zero) {
    using T = decltype(zero);
    dispatch_kernel<<<blocks_for(n * d), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(x.raw()), static_cast<const int32_t*>(row.raw()),
        static_cast<T*>(out.raw()), n, d);
  });
  SW_CUDA_CHECK_LAUNCH("dispatch");
  return out;
}

Tensor combine(const Tensor& expert_out, const Tensor& row, const Tensor& gate) {
  check_dtype(gate, DType::f32, "combine: gate (the router runs in f32)");
  const int64_t n = row.numel(), d = expert_out.dim(1);
  Tensor y = Tensor::empty({n, d}, expert_out.dtype(), expert_out.device());
  if (n == 0) return y;
  DeviceContext& ctx = device_context(expert_out);
  dispatch_storage(expert_out.dtype(), "combine", [&](auto zero) {
    using T = decltype(zero);
    combine_kernel<<<blocks_for(n * d), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(expert_out.raw()), static_cast<const int32_t*>(row.raw()),
        static_cast<const float*>(gate.raw()), static_cast<T*>(y.raw()), n, d);
  });
  SW_CUDA_CHECK_LAUNCH("combine");
  return y;
}

void dropout_rows(Tensor& x, double rate, const RandomStream& stream, const Tensor& stream_rows) {
  const int64_t rows = x.dim(0), width = x.dim(1);
  if (rows == 0) return;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "dropout", [&](auto zero) {
    using T = decltype(zero);
    dropout_rows_kernel<<<blocks_for(rows * width), kThreads, 0, ctx.stream>>>(
        static_cast<T*>(x.raw()), rows, width, static_cast<const int64_t*>(stream_rows.raw()),
        stream, static_cast<float>(rate), static_cast<float>(1.0 / (1.0 - rate)));
  });
  SW_CUDA_CHECK_LAUNCH("dropout_rows");
}

}  // namespace sw::kernels
