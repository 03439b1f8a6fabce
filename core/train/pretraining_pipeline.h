// The data side of a span-corruption pre-training run, from a TrainConfig: the corpus
// split into train and held-out documents, a SentencePiece tokenizer (the config's
// tokenizer_model, else one trained on the train documents), the packed and shuffled
// train stream and fixed held-out batches. Shared by PretrainingRun and the C API trainer.
#pragma once

#include <memory>
#include <vector>

#include "core/data/pretraining_data.h"
#include "core/data/sentencepiece_tokenizer.h"
#include "core/train/train_config.h"

namespace sw {

class PretrainingPipeline {
 public:
  explicit PretrainingPipeline(const TrainConfig& config);

  const SentencePieceTokenizer& tokenizer() const { return *tokenizer_; }
  SpanCorruptionData& train_data() { return *train_data_; }
  const SpanCorruptionData& train_data() const { return *train_data_; }

  // The next batch_size training examples for `model` (its pad and decoder start ids).
  Batch next_batch(const ModelConfig& model);
  // eval_batches batches of batch_size held-out examples in stream order, the same every
  // time (a small split is cycled to fill them).
  std::vector<Batch> eval_batches(const ModelConfig& model) const;
  // An error naming both sizes when the model cannot hold the tokenizer's ids.
  void check_model(const ModelConfig& model) const;

  int64_t train_documents() const { return train_documents_; }
  int64_t validation_documents() const { return validation_documents_; }
  int64_t train_tokens() const { return train_tokens_; }

 private:
  TrainConfig config_;
  std::unique_ptr<SentencePieceTokenizer> tokenizer_;
  std::unique_ptr<SpanCorruptionData> train_data_, held_out_;
  int64_t train_documents_ = 0, validation_documents_ = 0, train_tokens_ = 0;
};

}  // namespace sw
