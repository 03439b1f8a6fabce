// AdamW (docs/MATH.md §5): Adam with bias correction and decoupled weight decay.
#pragma once

#include <memory>

#include "core/train/optimizer.h"

namespace sw {

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;  // decoupled: p -= lr * weight_decay * p
};

std::unique_ptr<Optimizer> make_adamw(const AdamWOptions& options);

}  // namespace sw
