#include "core/ops/cpu_util.h"
#include "core/ops/position_bias.h"

namespace sw::ops::cpu {

Tensor position_bias(const Tensor& table, int64_t q_len, int64_t k_len, bool bidirectional,
                     int64_t max_distance, int64_t first_query) {
  const int64_t num_buckets = table.dim(0), heads = table.dim(1);
  Tensor bias = Tensor::empty({heads, q_len, k_len}, table.dtype());
  visit_float(table.dtype(), "position_bias", [&](auto zero) {
    using T = decltype(zero);
    const T* pt = table.data<T>();
    T* pb = bias.data<T>();
    for (int64_t i = 0; i < q_len; ++i)
      for (int64_t j = 0; j < k_len; ++j) {
        const int32_t b = relative_position_bucket(j - (first_query + i), bidirectional,
                                                   num_buckets, max_distance);
        for (int64_t h = 0; h < heads; ++h) pb[(h * q_len + i) * k_len + j] = pt[b * heads + h];
      }
  });
  return bias;
}

void position_bias_backward(const Tensor& dbias, bool bidirectional, int64_t max_distance,
                            int64_t first_head, Tensor& dtable) {
  require_cpu(dbias, "position_bias backward");
  const int64_t heads = dbias.dim(0), q_len = dbias.dim(1), k_len = dbias.dim(2);
  const int64_t num_buckets = dtable.dim(0), all_heads = dtable.dim(1);
  visit_float(dtable.dtype(), "position_bias backward", [&](auto zero) {
    using T = decltype(zero);
    const T* db = dbias.data<T>();
    T* dt = dtable.data<T>();
    for (int64_t i = 0; i < q_len; ++i)
      for (int64_t j = 0; j < k_len; ++j) {
        const int32_t bucket =
            relative_position_bucket(j - i, bidirectional, num_buckets, max_distance);
        for (int64_t h = 0; h < heads; ++h)
          dt[bucket * all_heads + first_head + h] += db[(h * q_len + i) * k_len + j];
      }
  });
}

}  // namespace sw::ops::cpu
