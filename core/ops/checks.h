// Argument checks and shape helpers shared by the ops' device switches (<op>.cc) and
// their implementations.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "core/tensor/philox.h"
#include "core/tensor/tensor.h"

namespace sw::ops {

// Random draws index a Philox stream by element; beyond its length they would repeat.
inline void check_stream_size(int64_t elements, const char* what) {
  SW_CHECK(static_cast<uint64_t>(elements) <= kMaxStreamElements, Status::kUnsupported, what, ": ",
           elements, " elements exceed one random stream (2^34)");
}

// Every defined tensor of `tensors` on the first one's device: the device switch looks at
// one of them and its implementation reads them all.
inline void check_same_device(std::initializer_list<const Tensor*> tensors, const char* op) {
  const Tensor* first = *tensors.begin();
  for (const Tensor* t : tensors)
    SW_CHECK_ARG(!t->defined() || t->device() == first->device(), op, ": ", t->str(), " is not on ",
                 first->device().str(), " like ", first->str());
}

// A gradient kept in the data's dtype, or in f32 for bf16 data on a GPU (bf16 training's f32
// master gradients, docs/MATH.md §5 Precision).
inline bool gradient_dtype_ok(const Tensor& gradient, const Tensor& data) {
  return gradient.dtype() == data.dtype() ||
         (gradient.dtype() == DType::f32 && data.dtype() == DType::bf16 &&
          !gradient.device().is_cpu());
}
inline void check_gradient_dtype(const Tensor& gradient, const Tensor& data, const char* what) {
  SW_CHECK_ARG(gradient_dtype_ok(gradient, data), what, ": the gradient ", gradient.str(),
               " is neither in the data's dtype (", data.str(), ") nor f32 for bf16 data on a GPU");
}

// The last dimension of t and the product of all the others (rows).
inline int64_t last_dim(const Tensor& t) { return t.ndim() ? t.dim(-1) : 1; }
inline int64_t leading_rows(const Tensor& t) {
  const int64_t d = last_dim(t);
  return d ? t.numel() / d : 0;
}

}  // namespace sw::ops
