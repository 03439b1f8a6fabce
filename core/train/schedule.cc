#include "core/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "core/tensor/error.h"

namespace sw {

void LearningRateSchedule::validate() const {
  SW_CHECK_ARG(std::isfinite(base) && base > 0, "learning rate: base must be > 0, got ", base);
  SW_CHECK_ARG(warmup_steps >= 0, "learning rate: warmup_steps must be >= 0, got ", warmup_steps);
  if (kind == Kind::kWarmupCosine) {
    SW_CHECK_ARG(total_steps > warmup_steps, "learning rate: total_steps (", total_steps,
                 ") must exceed warmup_steps (", warmup_steps, ") for the cosine schedule");
    SW_CHECK_ARG(min_rate >= 0 && min_rate <= base,
                 "learning rate: min_rate must be in [0, base], got ", min_rate);
  }
}

double LearningRateSchedule::rate(int64_t step) const {
  validate();
  SW_CHECK_ARG(step >= 1, "learning rate: steps count from 1, got ", step);
  const double s = static_cast<double>(step);
  switch (kind) {
    case Kind::kInverseSqrt:
      return base / std::sqrt(std::max(s, static_cast<double>(std::max<int64_t>(warmup_steps, 1))));
    case Kind::kConstant:
      return base;
    case Kind::kWarmupCosine: {
      if (step <= warmup_steps) return base * s / static_cast<double>(warmup_steps);
      const double progress =
          std::min(1.0, (s - warmup_steps) / static_cast<double>(total_steps - warmup_steps));
      return min_rate + 0.5 * (base - min_rate) * (1.0 + std::cos(M_PI * progress));
    }
  }
  throw Error(Status::kInternal, "learning rate: unknown schedule");
}

}  // namespace sw
