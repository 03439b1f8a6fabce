// The training loop's step: forward and backward over micro-batches (accumulated so the
// gradient equals the whole batch's), global gradient-norm clipping, the learning-rate
// schedule and the optimizer. CPU models.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/model/switch_transformer.h"
#include "core/train/optimizer.h"
#include "core/train/schedule.h"

namespace sw {

struct TrainOptions {
  enum class OptimizerKind { kAdafactor, kAdamW };
  OptimizerKind optimizer = OptimizerKind::kAdafactor;
  AdafactorOptions adafactor;
  AdamWOptions adamw;
  LearningRateSchedule schedule;  // T5's inverse square root by default
  double grad_clip_norm = 1.0;    // global L2 norm; 0 turns clipping off
};

struct TrainMetrics {
  int64_t step = 0;
  double loss = 0, ce = 0, aux = 0, z = 0;  // weighted over the micro-batches
  double grad_norm = 0;                     // before clipping
  double learning_rate = 0;
  double dropped_fraction = 0;  // mean over sparse layers and micro-batches
  int64_t tokens = 0;           // encoder + decoder tokens
  double seconds = 0;
};

class Trainer {
 public:
  Trainer(SwitchTransformer& model, const TrainOptions& options);

  // One optimizer step on a batch given as micro-batches (at least one, each with labels).
  TrainMetrics step(const std::vector<Batch>& micro_batches);

  // The gradient of the whole batch's loss from its micro-batches: CE weighted by each
  // micro-batch's share of label tokens, aux and z by its share of sequences (equal to the
  // whole batch's gradient when routing groups do not span sequences of different
  // micro-batches, i.e. not GROUP_BATCH; dropout masks are drawn per micro-batch).
  std::vector<std::pair<std::string, Tensor>> accumulate(const std::vector<Batch>& micro_batches,
                                                         TrainMetrics& metrics) const;

  int64_t steps_done() const { return steps_; }
  const Optimizer& optimizer() const { return *optimizer_; }

 private:
  SwitchTransformer& model_;
  TrainOptions options_;
  std::unique_ptr<Optimizer> optimizer_;
  int64_t steps_ = 0;
};

}  // namespace sw
