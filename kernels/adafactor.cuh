// Adafactor on CUDA behind core/train/adafactor.h: the CPU path's per-parameter update in
// f64 arithmetic on f32 parameters and state, with every sum (the row and column second
// moments, the parameter's RMS, the update's RMS for clipping) in a fixed order on the
// device, so a step is the same bits run to run and the host never waits.
#pragma once

#include <functional>

#include "core/tensor/tensor.h"
#include "core/train/adafactor.h"

namespace sw::kernels {

// The state of one parameter: row and col (factored, ndim >= 2) or v, and m when beta1 > 0
// (undefined tensors otherwise), all f32 on the parameter's device.
struct AdafactorState {
  Tensor row, col, v, m;
};

// A model-parallel part (core/dist/model_parallel.h): its statistics are summed over its
// group by `sum` (in place, on device f64 tensors) so that each part takes its share of
// the whole tensor's step, as on the cpu. Without `sum` the parameter is whole.
struct AdafactorSplit {
  std::function<void(Tensor&)> sum;
  int parts = 1;
  bool split_rows = false;  // the second-to-last axis is split (the column moments summed)
  bool split_cols = false;  // the last axis is split (the row moments summed)
};

void adafactor_update(Tensor& parameter, const Tensor& gradient, AdafactorState& state,
                      const AdafactorOptions& options, double lr, double beta2,
                      const AdafactorSplit& split = {});

}  // namespace sw::kernels
