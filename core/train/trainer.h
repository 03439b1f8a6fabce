// The training loop's step: forward and backward over micro-batches (accumulated so the
// gradient equals the whole batch's), global gradient-norm clipping, the learning-rate
// schedule and the optimizer. CPU models.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dist/communicator.h"
#include "core/dist/data_parallel.h"
#include "core/model/switch_transformer.h"
#include "core/train/adafactor.h"
#include "core/train/adamw.h"
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
  // A step with a non-finite loss or gradient norm changes nothing and is counted; this
  // many in a row end training with a Status::kNumeric error.
  int64_t max_bad_steps = 3;
  // Data parallelism: the replicas this one's gradients, losses and routing counts are
  // summed with (not owned; null: a single process). Each replica steps on its shard of
  // the global batch and all take the same update.
  Communicator* data_parallel = nullptr;
  // How the replicas' gradients are summed (data_parallel.h): rank-ordered by default, so
  // a data-parallel run is bit for bit the single-process run with as many micro-batches.
  Reduction gradient_reduction = Reduction::kRankOrdered;
  // Start each bucket's sum while the last micro-batch's backward still runs, as soon as
  // its gradients are final (ForwardOptions::gradients_final), rather than after the
  // backward. The same buckets either way; only the timing changes.
  bool overlap_reduction = true;
  size_t gradient_bucket_bytes = kDefaultBucketBytes;  // BucketedReduction's bucket
  // Recompute each block's activations in the backward (ForwardOptions::recompute).
  bool recompute_activations = false;
  // The GPU's fixed padded expert layout (ForwardOptions::fixed_expert_capacity), in the
  // steps and in evaluate.
  bool fixed_expert_capacity = false;
  // Expert parallelism: the group the model's experts are split over (the model's
  // expert_group()), a subgroup of data_parallel. Expert gradients are then summed only
  // over the ranks holding the same experts; every other gradient over data_parallel.
  Communicator* expert_parallel = nullptr;
  // Distillation (docs/MATH.md §5, paper §4.2): a trained model (not owned; the same
  // vocabulary, on the cpu) whose output probabilities are mixed into every step's target
  // with this weight (the paper: 0.25 teacher, 0.75 ground truth). Null: none.
  const SwitchTransformer* teacher = nullptr;
  double teacher_weight = 0.25;
  // Mixed precision (TrainConfig precision BF16, paper §2.4): the model's parameters are
  // the f32 masters the optimizer updates; every step computes with a copy rounded to
  // bf16 (the router's weight too when model.router_dtype is ROUTER_BFLOAT16) in bf16
  // storage (core/ops/storage.h), and its f32 weight gradients update the masters. CPU.
  bool bf16 = false;
};

// One sparse layer's routing over a step (summed over its micro-batches).
struct LayerLoad {
  Stack stack = Stack::kEncoder;
  int64_t block = 0;
  std::vector<int64_t> tokens_per_expert;  // argmax counts, before capacity
  std::vector<int64_t> kept_per_expert;    // assignments kept (k per token under top-k)
  int64_t choices = 1;                     // k
  double dropped_fraction = 0;             // of the assignments
  double router_entropy = 0;               // mean over tokens
  // The largest share of the layer's tokens one expert received, and which expert.
  double max_share() const;
  int64_t busiest_expert() const;
};

struct TrainMetrics {
  int64_t step = 0;
  double loss = 0, ce = 0, aux = 0, z = 0;  // weighted over the micro-batches
  double target = 0;     // the cross-entropy in the loss: ce, or with a teacher the mixed target's
  double grad_norm = 0;  // before clipping
  double learning_rate = 0;
  double dropped_fraction = 0;  // mean over sparse layers and micro-batches
  int64_t tokens = 0;           // encoder + decoder tokens
  double seconds = 0;
  // Where those seconds went: every micro-batch's forward and backward (a teacher's forward
  // included, and with overlap_reduction the start of the gradient sums), the gradient
  // sums over data-parallel replicas (with overlap, the wait for what the backward did not
  // hide), clipping, the optimizer.
  struct Phases {
    double forward_backward = 0, reduce = 0, clip = 0, optimizer = 0;
  } phases;
  bool skipped = false;           // the loss or the gradient was not finite: nothing updated
  int64_t skipped_steps = 0;      // skipped so far by this trainer
  std::vector<LayerLoad> layers;  // one per sparse block, encoder first
};

// Evaluation (eval mode: no dropout or jitter, the eval capacity factor).
struct EvalMetrics {
  double loss = 0, ce = 0, aux = 0, z = 0;  // ce weighted by label tokens
  double dropped_fraction = 0;
  int64_t tokens = 0, label_tokens = 0;
};

// A batch cut into `parts` micro-batches of (nearly) equal numbers of sequences.
std::vector<Batch> split_micro_batches(const Batch& batch, int64_t parts);

class Trainer {
 public:
  Trainer(SwitchTransformer& model, const TrainOptions& options);

  // One optimizer step on a batch given as micro-batches (at least one, each with labels).
  // A non-finite loss or gradient skips the update (metrics.skipped); max_bad_steps such
  // steps in a row throw a Status::kNumeric error, the model as it was before them.
  TrainMetrics step(const std::vector<Batch>& micro_batches);

  // The gradient of the whole batch's loss from its micro-batches: CE weighted by each
  // micro-batch's share of label tokens, aux and z by its share of sequences (equal to the
  // whole batch's gradient when routing groups do not span sequences of different
  // micro-batches, i.e. not GROUP_BATCH). Each micro-batch draws its dropout and jitter
  // from streams keyed by the position of its first example in the global batch (the
  // micro-batches in order, after the lower data-parallel ranks' shards), so no two draw
  // the same masks. With data parallelism the shares are of the global batch and the
  // result is summed over the replicas: every replica returns the global batch's gradient
  // and metrics, bit for bit those of one process given the same micro-batches in rank
  // order.
  std::vector<std::pair<std::string, Tensor>> accumulate(const std::vector<Batch>& micro_batches,
                                                         TrainMetrics& metrics) const;

  // The model's losses on held-out batches (each with labels), nothing updated.
  EvalMetrics evaluate(const std::vector<Batch>& batches) const;

  // Continues a run from a checkpoint: the steps it had taken and its optimizer state.
  void restore(int64_t steps_done, const std::vector<std::pair<std::string, Tensor>>& state);

  // Joins data-parallel replicas (options' data_parallel) after construction.
  void set_data_parallel(Communicator* replicas) { options_.data_parallel = replicas; }

  int64_t steps_done() const { return steps_; }
  const Optimizer& optimizer() const { return *optimizer_; }

 private:
  // Aux-loss-free balancing: each sparse layer's choice bias moves towards its
  // under-loaded experts by the config's rate (docs/MATH.md §3), from the step's loads.
  void update_balancing_biases(const std::vector<LayerLoad>& layers);
  // accumulate(), its gradients in `buffers` when given: [0] holds the sum, [1] each
  // further micro-batch's gradient before it is added (views into them are returned).
  std::vector<std::pair<std::string, Tensor>> accumulate_into(
      const std::vector<Batch>& micro_batches, TrainMetrics& metrics,
      GradientBuffer* buffers) const;

  // The model the steps compute with: model_, or under bf16 its bf16-valued twin, its
  // weights refreshed from model_'s before each use.
  const SwitchTransformer& compute_model() const;

  SwitchTransformer& model_;
  std::unique_ptr<SwitchTransformer> bf16_twin_;
  TrainOptions options_;
  std::unique_ptr<Optimizer> optimizer_;
  int64_t steps_ = 0;
  int64_t skipped_ = 0, bad_in_a_row_ = 0;
  // The step's gradients, kept from step to step (see accumulate_into).
  GradientBuffer step_gradients_[2];
  // The data-parallel ranks that hold this rank's experts (made at the first step).
  mutable std::unique_ptr<Communicator> expert_replicas_;
};

}  // namespace sw
