// Adafactor (docs/MATH.md §5): factored second moments, no first moment by default, update
// clipping and relative step scaling.
#pragma once

#include <memory>

#include "core/train/optimizer.h"

namespace sw {

struct AdafactorOptions {
  double beta1 = 0.0;                        // 0: no first moment (T5 / the paper)
  double decay_rate = 0.8;                   // second-moment decay: beta2_t = 1 - t^-decay_rate
  double eps1 = 1e-30;                       // added to the squared gradient
  double eps2 = 1e-3;                        // floor of the parameter scale
  double clip_threshold = 1.0;               // update RMS clipped to this
  bool multiply_by_parameter_scale = false;  // lr_t = lr * max(eps2, RMS(parameter))
  double weight_decay = 0.0;                 // decoupled, times lr_t
};

std::unique_ptr<Optimizer> make_adafactor(const AdafactorOptions& options);

}  // namespace sw
