// Learning-rate schedules (docs/MATH.md §5): T5's inverse square root with warmup, constant, and
// linear warmup followed by cosine decay.
#pragma once

#include <cstdint>

namespace sw {

struct LearningRateSchedule {
  enum class Kind { kInverseSqrt, kConstant, kWarmupCosine };
  Kind kind = Kind::kInverseSqrt;
  double base = 1.0;  // inverse sqrt: lr = base / sqrt(max(step, warmup)) (T5: 1.0)
  int64_t warmup_steps = 10000;
  int64_t total_steps = 0;  // cosine: the step where the rate reaches min_rate
  double min_rate = 0.0;    // cosine: the final rate

  // The rate at 1-based `step`; an invalid schedule is an invalid-argument error.
  double rate(int64_t step) const;
  void validate() const;
};

}  // namespace sw
