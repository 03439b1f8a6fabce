// AdamW on CUDA behind core/train/adamw.h: one elementwise kernel per parameter, the
// CPU path's f64 arithmetic on f32 parameters and state.
#pragma once

#include "core/tensor/tensor.h"
#include "core/train/adamw.h"

namespace sw::kernels {

// m, v and p updated in place from g (all f32 on one device); c1 and c2 the bias
// corrections 1 - beta^step.
void adamw_update(Tensor& parameter, const Tensor& gradient, Tensor& m, Tensor& v,
                  const AdamWOptions& options, double lr, double c1, double c2);

}  // namespace sw::kernels
