// A span-corruption pre-training run from a TrainConfig: the corpus split into train and
// held-out documents, a SentencePiece tokenizer (trained on the train side unless one is
// given), the packed and shuffled data streams, the model and its trainer. Each step and
// each evaluation is appended to `<out>/metrics.jsonl` and to a TensorBoard event file in
// <out> (`tensorboard --logdir <out>`); the resolved config and the tokenizer are written
// beside them. Nothing is printed: the caller reports progress.
#pragma once

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/dist/layout.h"
#include "core/io/tensorboard.h"
#include "core/train/model_shares.h"
#include "core/train/pretraining_pipeline.h"
#include "core/train/train_config.h"

namespace sw {

class PretrainingRun {
 public:
  // With `resume`, a run continues from the latest checkpoint under <out>/checkpoints when
  // there is one (its model must be the config's), appending to metrics.jsonl; the
  // continued run is bit-identical to one that never stopped. Distributed (`groups`),
  // each rank runs this with the same config: every rank draws the same global batch and
  // steps on its shard; with expert parallelism each holds its share of the experts, with
  // model parallelism its part of every attention sublayer and feed-forward.
  // Rank 0 writes the run's files; checkpoints hold the whole model (each expert written
  // by one of its owners, model-parallel parts gathered), so a run continues at any
  // layout.
  PretrainingRun(const TrainConfig& config, const std::string& out_dir, bool resume = false,
                 const ParallelGroups& groups = {});

  // Saves the model, optimizer state, step and data position under <out>/checkpoints
  // (collective; rank 0 returns the directory, the other ranks "").
  std::string save_checkpoint();
  std::string checkpoint_root() const { return out_dir_ + "/checkpoints"; }

  // One optimizer step on the next batch.
  TrainMetrics step();
  // The held-out loss on the same eval_batches batches every time (eval mode).
  EvalMetrics evaluate();

  const TrainConfig& config() const { return config_; }  // model resolved inline
  const SwitchTransformer& model() const { return *model_; }
  const PretrainingPipeline& data() const { return *data_; }
  const SentencePieceTokenizer& tokenizer() const { return data_->tokenizer(); }
  const std::vector<Batch>& eval_batches() const { return eval_batches_; }
  int64_t steps_done() const { return trainer_->steps_done(); }

 private:
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;

  TrainConfig config_;
  std::string out_dir_;
  std::unique_ptr<PretrainingPipeline> data_;
  std::vector<Batch> eval_batches_;
  std::unique_ptr<SwitchTransformer> model_;
  std::unique_ptr<SwitchTransformer> teacher_;  // distillation's, when the config names one
  std::unique_ptr<Trainer> trainer_;
  std::ofstream metrics_;
  std::unique_ptr<TensorBoardWriter> events_;  // a new event file per process (rank 0)
  ParallelGroups groups_;
  std::unique_ptr<ModelShares> shares_;  // this rank's share of the model, and saving it
  bool writer_ = true;                   // rank 0 (or a single process) writes the run's files
};

// The JSON lines of metrics.jsonl (one object each, no newline).
std::string metrics_json(const TrainMetrics& m);
std::string metrics_json(const EvalMetrics& m, int64_t step);
// The same values for TensorBoard: train/* and eval/* scalars, router/<stack>.<block>/
// entropy and dropped, and load/<stack>.<block>, each expert's routed tokens (before
// capacity) as a histogram over the expert index.
TensorBoardSummary metrics_summary(const TrainMetrics& m);
TensorBoardSummary metrics_summary(const EvalMetrics& m);

}  // namespace sw
