#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "core/ops/position_bias.h"
#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/position_bias.cuh"

namespace sw::kernels {
namespace {

// A small int32 table built on the host, kept on the device for the process: built once
// per key (device, kind and shape), so the steps of a run with fixed shapes copy nothing
// to the device (each copy makes the host wait for the stream). Up to 256 tables; then
// the cache starts over. A table is returned by value (shared storage), so a caller's
// table outlives a clear by another thread; freed blocks are reused only by later work on
// the same stream.
using TableKey = std::tuple<int, int, bool, int64_t, int64_t, int64_t, int64_t>;
Tensor cached_table(const Device& device, const TableKey& key,
                    const std::function<std::vector<int32_t>()>& build) {
  static std::mutex mutex;
  // Never destroyed: device memory is not freed after the CUDA runtime shuts down.
  static auto* tables = new std::map<TableKey, Tensor>();
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = tables->find(key);
    if (it != tables->end()) return it->second;
  }
  const std::vector<int32_t> values = build();
  const Tensor table =
      Tensor::from_vector<int32_t>(values, {static_cast<int64_t>(values.size())}).to(device);
  std::lock_guard<std::mutex> lock(mutex);
  if (tables->size() >= 256) tables->clear();
  (*tables)[key] = table;
  return table;
}

// bias[h, i, j] = table[bucket_of[j - (first_query + i) - min_rel], h].
template <typename T>
__global__ void position_bias_kernel(const T* table, const int32_t* bucket_of, float* bias,
                                     int64_t heads, int64_t q_len, int64_t k_len,
                                     int64_t first_query, int64_t min_rel) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= heads * q_len * k_len) return;
  const int64_t j = e % k_len, i = (e / k_len) % q_len, h = e / (q_len * k_len);
  const int32_t bucket = bucket_of[j - (first_query + i) - min_rel];
  bias[e] = load(table, bucket * heads + h);
}

// Bucket b holds the distances rel in [rel_range[2b], rel_range[2b + 1]] (empty when the
// first exceeds the second): for query i, keys j = i + rel, j ascending.
__global__ void position_bias_backward_kernel(const float* dbias, const int32_t* rel_range,
                                              float* dtable, int64_t num_buckets, int64_t heads,
                                              int64_t all_heads, int64_t first_head, int64_t q_len,
                                              int64_t k_len) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= num_buckets * heads) return;
  const int64_t b = e / heads, h = e % heads;
  const int64_t lo = rel_range[2 * b], hi = rel_range[2 * b + 1];
  float sum = dtable[b * all_heads + first_head + h];
  for (int64_t i = 0; i < q_len && lo <= hi; ++i) {
    const int64_t j0 = i + lo < 0 ? 0 : i + lo, j1 = i + hi < k_len - 1 ? i + hi : k_len - 1;
    const float* row = dbias + (h * q_len + i) * k_len;
    for (int64_t j = j0; j <= j1; ++j) sum += row[j];
  }
  dtable[b * all_heads + first_head + h] = sum;
}

}  // namespace

Tensor position_bias(const Tensor& table, int64_t q_len, int64_t k_len, bool bidirectional,
                     int64_t max_distance, int64_t first_query) {
  const int64_t num_buckets = table.dim(0), heads = table.dim(1);
  Tensor bias = Tensor::empty({heads, q_len, k_len}, DType::f32, table.device());
  if (bias.numel() == 0) return bias;
  // Distances from the last query to the first key up to the first query to the last key.
  const int64_t min_rel = -(first_query + q_len - 1), max_rel = k_len - 1 - first_query;
  const Tensor buckets = cached_table(
      table.device(),
      {table.device().index, 0, bidirectional, num_buckets, max_distance, min_rel, max_rel}, [&] {
        std::vector<int32_t> bucket_of(static_cast<size_t>(max_rel - min_rel + 1));
        for (int64_t rel = min_rel; rel <= max_rel; ++rel)
          bucket_of[rel - min_rel] =
              ops::relative_position_bucket(rel, bidirectional, num_buckets, max_distance);
        return bucket_of;
      });
  DeviceContext& ctx = device_context(table);
  dispatch_storage(table.dtype(), "position_bias", [&](auto zero) {
    using T = decltype(zero);
    position_bias_kernel<<<blocks_for(bias.numel()), kThreads, 0, ctx.stream>>>(
        static_cast<const T*>(table.raw()), static_cast<const int32_t*>(buckets.raw()),
        static_cast<float*>(bias.raw()), heads, q_len, k_len, first_query, min_rel);
  });
  SW_CUDA_CHECK_LAUNCH("position_bias");
  return bias;
}

void position_bias_backward(const Tensor& dbias, bool bidirectional, int64_t max_distance,
                            int64_t first_head, Tensor& dtable) {
  check_dtype(dtable, DType::f32, "position_bias backward on cuda: the table gradient");
  const int64_t heads = dbias.dim(0), q_len = dbias.dim(1), k_len = dbias.dim(2);
  const int64_t num_buckets = dtable.dim(0);
  if (dbias.numel() == 0 || num_buckets == 0) return;
  // Each bucket's distances form one interval: the bucket grows with |rel| on each side.
  const Tensor ranges = cached_table(
      dtable.device(),
      {dtable.device().index, 1, bidirectional, num_buckets, max_distance, q_len, k_len}, [&] {
        std::vector<int32_t> range(static_cast<size_t>(2 * num_buckets));
        for (int64_t b = 0; b < num_buckets; ++b) {
          range[2 * b] = 1;
          range[2 * b + 1] = 0;
        }
        for (int64_t rel = -(q_len - 1); rel <= k_len - 1; ++rel) {
          const int32_t b =
              ops::relative_position_bucket(rel, bidirectional, num_buckets, max_distance);
          int32_t &lo = range[2 * b], &hi = range[2 * b + 1];
          if (lo > hi) {
            lo = hi = static_cast<int32_t>(rel);
            continue;
          }
          SW_CHECK(rel == hi + 1, Status::kInternal, "position_bias backward: bucket ", b,
                   " holds distances ", lo, "..", hi, " and ", rel, ", not one interval");
          hi = static_cast<int32_t>(rel);
        }
        return range;
      });
  DeviceContext& ctx = device_context(dtable);
  position_bias_backward_kernel<<<blocks_for(num_buckets * heads), kThreads, 0, ctx.stream>>>(
      static_cast<const float*>(dbias.raw()), static_cast<const int32_t*>(ranges.raw()),
      static_cast<float*>(dtable.raw()), num_buckets, heads, dtable.dim(1), first_head, q_len,
      k_len);
  SW_CUDA_CHECK_LAUNCH("position_bias_backward");
}

}  // namespace sw::kernels
