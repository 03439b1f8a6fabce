#include "core/model/batch.h"

namespace sw {

void check_ids(const Tensor& t, const char* what) {
  SW_CHECK_ARG(t.defined(), what, ": missing");
  SW_CHECK_ARG(t.ndim() == 2 && t.dim(0) >= 1 && t.dim(1) >= 1, what,
               ": expected a non-empty [batch, length] tensor, got ", t.str());
  check_dtype(t, DType::i32, what);
}

void check_mask(const Tensor& mask, const Tensor& ids, const char* what) {
  if (!mask.defined()) return;
  check_shape(mask, ids.shape(), what);
  check_dtype(mask, DType::i32, what);
  const int32_t* p = mask.data<int32_t>();
  for (int64_t i = 0; i < mask.numel(); ++i)
    SW_CHECK_ARG(p[i] == 0 || p[i] == 1, what, ": values must be 0 or 1, got ", p[i],
                 " at flat position ", i);
}

}  // namespace sw
