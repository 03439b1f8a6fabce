// The global gradient norm on CUDA behind core/train/gradient_clipping.h: the sum of
// squares of many tensors of one device, in a fixed order.
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace sw::kernels {

// Sum of squares (f64) over every element of xs (f32, one device), tensor after tensor and
// chunk after chunk: the same bits run to run. One copy to the host.
double sum_of_squares(const std::vector<Tensor>& xs);

}  // namespace sw::kernels
