// Adafactor on CUDA behind core/train/adafactor.h: the CPU path's per-parameter update in
// f64 arithmetic on f32 parameters and state, with every sum (the row and column second
// moments, the parameter's RMS, the update's RMS for clipping) in a fixed order on the
// device, so a step is the same bits run to run and the host never waits.
#pragma once

#include "core/tensor/tensor.h"
#include "core/train/adafactor.h"

namespace sw::kernels {

// The state of one parameter: row and col (factored, ndim >= 2) or v, and m when beta1 > 0
// (undefined tensors otherwise), all f32 on the parameter's device.
struct AdafactorState {
  Tensor row, col, v, m;
};

void adafactor_update(Tensor& parameter, const Tensor& gradient, AdafactorState& state,
                      const AdafactorOptions& options, double lr, double beta2);

}  // namespace sw::kernels
