#include <algorithm>
#include <cstring>

#include "core/ops/cpu_util.h"
#include "core/ops/dispatch.h"

namespace sw::ops::cpu {

Tensor dispatch(const Tensor& x, const CapacityAssignment& a) {
  const int64_t n = x.dim(0), d = x.dim(1), k = a.row.dim(1);
  Tensor buffer = Tensor::empty({a.kept(), d}, x.dtype());
  const size_t row_bytes = static_cast<size_t>(d) * dtype_size(x.dtype());
  const int32_t* row = a.row.data<int32_t>();
  const char* src = static_cast<const char*>(x.raw());
  char* dst = static_cast<char*>(buffer.raw());
  for (int64_t i = 0; i < n * k; ++i)
    if (row[i] >= 0) std::memcpy(dst + row[i] * row_bytes, src + i / k * row_bytes, row_bytes);
  return buffer;
}

Tensor combine(const Tensor& expert_out, const Tensor& gate, const CapacityAssignment& a) {
  const int64_t n = a.row.dim(0), k = a.row.dim(1), d = expert_out.dim(1);
  Tensor y = Tensor::empty({n, d}, expert_out.dtype());
  visit_float(expert_out.dtype(), "combine", [&](auto zero) {
    using T = decltype(zero);
    const T* src = expert_out.data<T>();
    const T* g = gate.data<T>();
    const int32_t* row = a.row.data<int32_t>();
    T* out = y.data<T>();
    for (int64_t t = 0; t < n; ++t) {
      T* y_row = out + t * d;
      std::fill(y_row, y_row + d, T(0));  // all dropped: the sublayer passes h through
      bool written = false;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t i = t * k + j;
        if (row[i] < 0) continue;
        const T* e_row = src + row[i] * d;
        for (int64_t c = 0; c < d; ++c)
          y_row[c] = written ? y_row[c] + g[i] * e_row[c] : g[i] * e_row[c];
        written = true;
      }
    }
  });
  return y;
}

Tensor dispatch_backward(const Tensor& d_buffer, const CapacityAssignment& a) {
  const int64_t n = a.row.dim(0), k = a.row.dim(1), d = d_buffer.dim(1);
  Tensor d_x = Tensor::zeros({n, d}, d_buffer.dtype());
  visit_float(d_buffer.dtype(), "dispatch backward", [&](auto zero) {
    using T = decltype(zero);
    const T* db = d_buffer.data<T>();
    const int32_t* row = a.row.data<int32_t>();
    T* dx = d_x.data<T>();
    for (int64_t t = 0; t < n; ++t) {
      bool written = false;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t r = row[t * k + j];
        if (r < 0) continue;
        for (int64_t c = 0; c < d; ++c)
          dx[t * d + c] = written ? dx[t * d + c] + db[r * d + c] : db[r * d + c];
        written = true;
      }
    }
  });
  return d_x;
}

void combine_backward(const Tensor& dy, const Tensor& expert_out, const Tensor& gate,
                      const CapacityAssignment& a, Tensor& d_expert_out, Tensor& d_gate) {
  const int64_t n = a.row.dim(0), k = a.row.dim(1), d = expert_out.dim(1);
  d_expert_out = Tensor::zeros(expert_out.shape(), expert_out.dtype());
  d_gate = Tensor::zeros(a.row.shape(), expert_out.dtype());
  visit_float(expert_out.dtype(), "combine backward", [&](auto zero) {
    using T = decltype(zero);
    const T* g = dy.data<T>();
    const T* gt = gate.data<T>();
    const T* eo = expert_out.data<T>();
    const int32_t* row = a.row.data<int32_t>();
    T* deo = d_expert_out.data<T>();
    T* dg = d_gate.data<T>();
    // y[t] = sum_j gate[t, j] * expert_out[row[t, j]].
    for (int64_t i = 0; i < n * k; ++i) {
      if (row[i] < 0) continue;  // dropped: no expert row, no gate gradient
      const int64_t t = i / k;
      T dgate = 0;
      for (int64_t c = 0; c < d; ++c) {
        deo[row[i] * d + c] = gt[i] * g[t * d + c];
        dgate += g[t * d + c] * eo[row[i] * d + c];
      }
      dg[i] = dgate;
    }
  });
}

}  // namespace sw::ops::cpu
