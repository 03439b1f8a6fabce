#include <cstring>

#include "core/ops/cpu_util.h"
#include "core/ops/embedding.h"

namespace sw::ops::cpu {

Tensor embedding(const Tensor& table, const Tensor& ids) {
  const int64_t d = table.dim(1);
  Shape out_shape = ids.shape();
  out_shape.push_back(d);
  Tensor y = Tensor::empty(out_shape, table.dtype());
  const size_t row_bytes = static_cast<size_t>(d) * dtype_size(table.dtype());
  const int32_t* pid = ids.data<int32_t>();
  const char* src = static_cast<const char*>(table.raw());
  char* dst = static_cast<char*>(y.raw());
  for (int64_t i = 0; i < ids.numel(); ++i)
    std::memcpy(dst + i * row_bytes, src + pid[i] * row_bytes, row_bytes);
  return y;
}

void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable) {
  require_cpu(dy, "embedding backward");
  require_cpu(ids, "embedding backward");
  const int64_t d = dtable.dim(1);
  const int32_t* pid = ids.data<int32_t>();
  visit_float(dtable.dtype(), "embedding backward", [&](auto zero) {
    using T = decltype(zero);
    const T* g = dy.data<T>();
    T* out = dtable.data<T>();
    for (int64_t t = 0; t < ids.numel(); ++t)
      for (int64_t i = 0; i < d; ++i) out[pid[t] * d + i] += g[t * d + i];
  });
}

}  // namespace sw::ops::cpu
