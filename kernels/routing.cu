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

// Softmax and top-1 of one token's logits row, by one warp: max and argmax (ties to the
// lowest index), then the probabilities; lane 0 writes the index and gate.
__device__ void softmax_top1_row(const float* row, float* probs, int32_t* index, float* gate,
                                 int64_t experts, int lane) {
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
  for (int64_t e = lane; e < experts; e += 32) probs[e] = expf(row[e] - best) * inv;
  if (lane == 0) {
    *index = best_index;
    *gate = inv;  // exp(best - best) / sum
  }
}

// One warp per token.
__global__ void softmax_top1_kernel(const float* logits, float* probs, int32_t* index, float* gate,
                                    int64_t n, int64_t experts) {
  const int64_t token = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (token >= n) return;
  softmax_top1_row(logits + token * experts, probs + token * experts, index + token, gate + token,
                   experts, threadIdx.x % 32);
}

// One warp per token: each logit is a warp-wide f32 dot product of the token's row (read
// from L1 after the first expert) with the expert's f32 weight row.
template <typename T>
__global__ void fused_router_kernel(const T* x, const float* weight, float* logits, float* probs,
                                    int32_t* index, float* gate, int64_t n, int64_t d,
                                    int64_t experts) {
  const int64_t token = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (token >= n) return;
  const T* row = x + token * d;
  float* out = logits + token * experts;
  for (int64_t e = 0; e < experts; ++e) {
    const float* w = weight + e * d;
    float acc = 0.0f;
    for (int64_t j = lane; j < d; j += 32) acc += load(row, j) * w[j];
    for (int offset = 16; offset > 0; offset /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, offset);
    if (lane == e % 32) out[e] = acc;
  }
  __syncwarp();  // the row's logits, written by several lanes, are visible to the warp
  softmax_top1_row(out, probs + token * experts, index + token, gate + token, experts, lane);
}

// One warp per group walks its tokens in token order, 32 at a time: lanes routed to the
// same expert rank themselves with __match_any_sync, and a shared counter per expert
// carries the running count across chunks. A token past the capacity gets -1.
__global__ void count_in_groups_kernel(const int32_t* index, int32_t* position, int64_t* kept,
                                       int64_t groups, int64_t group_size, int64_t experts,
                                       int64_t capacity) {
  extern __shared__ int64_t counts[];  // [experts]
  const int64_t g = blockIdx.x;
  const unsigned lane = threadIdx.x;
  for (int64_t e = lane; e < experts; e += 32) counts[e] = 0;
  __syncwarp();
  const unsigned lanes_below = (1u << lane) - 1;
  for (int64_t start = g * group_size; start < (g + 1) * group_size; start += 32) {
    const int64_t t = start + lane;
    const bool active = t < (g + 1) * group_size;
    const int e = active ? index[t] : -1;
    const unsigned peers = __match_any_sync(0xffffffffu, e);
    if (active) {
      const int64_t count = counts[e] + __popc(peers & lanes_below) + 1;
      position[t] = count <= capacity ? static_cast<int32_t>(count - 1) : -1;
    }
    __syncwarp();
    if (active && lane == static_cast<unsigned>(__ffs(peers) - 1)) counts[e] += __popc(peers);
    __syncwarp();
  }
  for (int64_t e = lane; e < experts; e += 32)
    kept[e * groups + g] = counts[e] < capacity ? counts[e] : capacity;
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

// One block per token: a kept token's row is copied in 16-byte words (rows are 16-byte
// aligned when d * sizeof(T) is a multiple of 16), else element by element.
template <typename T>
__global__ void dispatch_kernel(const T* x, const int32_t* row, T* out, int64_t d, bool wide) {
  const int64_t t = blockIdx.x, r = row[t];
  if (r < 0) return;
  if (wide) {
    const int64_t words = d * sizeof(T) / 16;
    const uint4* src = reinterpret_cast<const uint4*>(x + t * d);
    uint4* dst = reinterpret_cast<uint4*>(out + r * d);
    for (int64_t i = threadIdx.x; i < words; i += blockDim.x) dst[i] = src[i];
  } else {
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) out[r * d + i] = x[t * d + i];
  }
}

template <typename T>
__global__ void combine_kernel(const T* expert_out, const int32_t* row, const float* gate, T* y,
                               int64_t d) {
  const int64_t t = blockIdx.x, r = row[t];
  const float g = r >= 0 ? gate[t] : 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    store(y, t * d + i, r >= 0 ? g * load(expert_out, r * d + i) : 0.0f);
}

__global__ void padded_rows_kernel(const int32_t* index, const int32_t* slot, int32_t* padded,
                                   int64_t n, int64_t rows_per_expert) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t < n)
    padded[t] = slot[t] < 0 ? -1 : static_cast<int32_t>(index[t] * rows_per_expert + slot[t]);
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

void fused_router(const Tensor& x, const Tensor& weight, Tensor& logits, Tensor& probs,
                  Tensor& expert_index, Tensor& gate) {
  check_dtype(weight, DType::f32, "router weight (the router runs in f32)");
  const int64_t n = x.dim(0), d = x.dim(1), experts = weight.dim(0);
  if (n == 0) return;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "router", [&](auto zero) {
    using T = decltype(zero);
    fused_router_kernel<<<blocks_for(n * 32), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(x.raw()), static_cast<const float*>(weight.raw()),
        static_cast<float*>(logits.raw()), static_cast<float*>(probs.raw()),
        static_cast<int32_t*>(expert_index.raw()), static_cast<float*>(gate.raw()), n, d, experts);
  });
  SW_CUDA_CHECK_LAUNCH("fused_router");
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
  const size_t shared_bytes = static_cast<size_t>(experts) * sizeof(int64_t);
  SW_CHECK(shared_bytes <= 48 * 1024, Status::kUnsupported, "assign_capacity: ", experts,
           " experts exceed the 6144 the capacity kernel's shared counters hold");
  count_in_groups_kernel<<<static_cast<unsigned>(groups), 32, shared_bytes, ctx.stream>>>(
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
  Tensor totals = Tensor::empty({experts}, DType::i64, dev);
  expert_totals_kernel<<<blocks_for(experts), kThreads, 0, ctx.stream>>>(
      static_cast<const int64_t*>(kept.raw()), static_cast<int64_t*>(totals.raw()), experts,
      groups);
  SW_CUDA_CHECK_LAUNCH("expert_totals");
  a.kept_per_expert.assign(experts, 0);
  kernels::copy_bytes(a.kept_per_expert.data(), Device::cpu(), totals.raw(), dev,
                      experts * sizeof(int64_t));
  a.expert_offset.assign(experts + 1, 0);
  for (int64_t e = 0; e < experts; ++e)
    a.expert_offset[e + 1] = a.expert_offset[e] + a.kept_per_expert[e];
  a.dropped = n - a.expert_offset[experts];
  return a;
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

Tensor dispatch(const Tensor& x, const Tensor& row, int64_t kept) {
  const int64_t n = x.dim(0), d = x.dim(1);
  Tensor out = Tensor::empty({kept, d}, x.dtype(), x.device());
  if (n == 0 || kept == 0) return out;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "dispatch", [&](auto zero) {
    using T = decltype(zero);
    const bool wide = (d * sizeof(T)) % 16 == 0;
    dispatch_kernel<<<static_cast<unsigned>(n), 128, 0, ctx.stream>>>(
        static_cast<const T*>(x.raw()), static_cast<const int32_t*>(row.raw()),
        static_cast<T*>(out.raw()), d, wide);
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
    combine_kernel<<<static_cast<unsigned>(n), 128, 0, ctx.stream>>>(
        static_cast<const T*>(expert_out.raw()), static_cast<const int32_t*>(row.raw()),
        static_cast<const float*>(gate.raw()), static_cast<T*>(y.raw()), d);
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
