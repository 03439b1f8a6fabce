#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/ops/dispatch.h"
#include "core/ops/position_bias.h"

namespace sw::ops {

int32_t relative_position_bucket(int64_t rel, bool bidirectional, int64_t num_buckets,
                                 int64_t max_distance) {
  // Each direction needs max_exact >= 1 exact buckets and room for the log ones.
  SW_CHECK_ARG(num_buckets >= (bidirectional ? 4 : 2), "relative_position_bucket: ", num_buckets,
               " buckets are too few");
  SW_CHECK_ARG(max_distance > (bidirectional ? num_buckets / 2 : num_buckets) / 2,
               "relative_position_bucket: max_distance ", max_distance,
               " must exceed the exact range of ", num_buckets, " buckets");
  int64_t bucket = 0, r;
  if (bidirectional) {
    num_buckets /= 2;
    if (rel > 0) bucket += num_buckets;
    r = std::llabs(rel);
  } else {
    r = std::max<int64_t>(-rel, 0);
  }
  const int64_t max_exact = num_buckets / 2;
  if (r < max_exact) return static_cast<int32_t>(bucket + r);
  const float scaled = std::log(static_cast<float>(r) / static_cast<float>(max_exact)) /
                       static_cast<float>(std::log(static_cast<double>(max_distance) / max_exact)) *
                       static_cast<float>(num_buckets - max_exact);
  const int64_t large =
      std::min<int64_t>(max_exact + static_cast<int64_t>(scaled), num_buckets - 1);
  return static_cast<int32_t>(bucket + large);
}

Tensor position_bias(const Tensor& table, int64_t q_len, int64_t k_len, bool bidirectional,
                     int64_t max_distance) {
  require_cpu(table, "position_bias");
  SW_CHECK_ARG(table.ndim() == 2, "position_bias: table must be [num_buckets, heads], got ",
               table.str());
  const int64_t num_buckets = table.dim(0), heads = table.dim(1);
  Tensor bias = Tensor::empty({heads, q_len, k_len}, table.dtype());
  dispatch_float(table.dtype(), "position_bias", [&](auto zero) {
    using T = decltype(zero);
    const T* pt = table.data<T>();
    T* pb = bias.data<T>();
    for (int64_t i = 0; i < q_len; ++i)
      for (int64_t j = 0; j < k_len; ++j) {
        const int32_t b = relative_position_bucket(j - i, bidirectional, num_buckets, max_distance);
        for (int64_t h = 0; h < heads; ++h) pb[(h * q_len + i) * k_len + j] = pt[b * heads + h];
      }
  });
  return bias;
}

}  // namespace sw::ops
