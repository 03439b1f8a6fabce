#include "core/ops/position_bias.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "core/ops/checks.h"
#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/position_bias.cuh"

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
                     int64_t max_distance, int64_t first_query) {
  SW_CHECK_ARG(table.ndim() == 2, "position_bias: table must be [num_buckets, heads], got ",
               table.str());
  SW_CHECK_ARG(q_len >= 0 && k_len >= 0 && first_query >= 0,
               "position_bias: lengths and the first query must be >= 0, got ", q_len, ", ", k_len,
               ", ", first_query);
  if (on_cuda(table))
    SW_RUN_ON_CUDA(
        kernels::position_bias(table, q_len, k_len, bidirectional, max_distance, first_query));
  return stored(cpu::position_bias(table, q_len, k_len, bidirectional, max_distance, first_query));
}

void position_bias_backward(const Tensor& dbias, bool bidirectional, int64_t max_distance,
                            int64_t first_head, Tensor& dtable) {
  SW_CHECK_ARG(dbias.ndim() == 3 && dtable.ndim() == 2 && first_head >= 0 &&
                   first_head + dbias.dim(0) <= dtable.dim(1),
               "position_bias backward: dbias ", dbias.str(), " from head ", first_head,
               " does not fit the table gradient ", dtable.str());
  check_dtype(dbias, dtable.dtype(), "position_bias backward: dbias");
  check_same_device({&dtable, &dbias}, "position_bias backward");
  if (on_cuda(dtable)) {
    SW_RUN_ON_CUDA(
        kernels::position_bias_backward(dbias, bidirectional, max_distance, first_head, dtable));
  }
  cpu::position_bias_backward(dbias, bidirectional, max_distance, first_head, dtable);
}

}  // namespace sw::ops
