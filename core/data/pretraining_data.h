// The T5 span-corruption pre-training stream (docs/MATH.md §1; t5.data.preprocessors.
// span_corruption): documents are tokenized and concatenated, the token stream is cut
// into segments of the raw length whose corrupted input and target just fit the model's
// lengths (T5's random_spans_helper), so sequences are packed full and padding is rare;
// segments are visited in a Philox-shuffled order that changes every epoch; each segment
// is span-corrupted with noise drawn from its own Philox stream. Everything is a function
// of (seed, position): a saved DataPosition restores the exact same batches.
#pragma once

#include <cstdint>
#include <vector>

#include "core/data/seq2seq_batch.h"
#include "core/data/span_corruption.h"
#include "core/model/config.h"

namespace sw {

struct SpanCorruptionLengths {
  int64_t raw = 0;  // tokens of text per example
  int64_t inputs = 0, targets = 0;
};
// The longest raw segment whose corrupted inputs (with eos) and targets (with the final
// sentinel and eos) fit input_length and target_length.
SpanCorruptionLengths span_corruption_lengths(int64_t input_length, int64_t target_length,
                                              double noise_density, double mean_noise_span_length);

struct DataPosition {
  int64_t epoch = 0;
  int64_t example = 0;  // the next example within the epoch's order
  bool operator==(const DataPosition& o) const { return epoch == o.epoch && example == o.example; }
};

struct PretrainingDataOptions {
  int64_t input_length = 128, target_length = 32;
  double noise_density = 0.15, mean_noise_span_length = 3.0;
  bool shuffle = true;  // off for evaluation: the same examples in stream order
  uint64_t seed = 0;
};

class SpanCorruptionData {
 public:
  // `tokens` is the concatenated token stream (no eos, no sentinel); vocab_size and
  // num_sentinels are the tokenizer's (sentinels count down from vocab_size - 1).
  SpanCorruptionData(std::vector<int32_t> tokens, int64_t vocab_size, int64_t num_sentinels,
                     const PretrainingDataOptions& options);

  int64_t examples_per_epoch() const { return examples_per_epoch_; }
  const SpanCorruptionLengths& lengths() const { return lengths_; }

  // The example at a position (no state involved).
  Seq2SeqExample example(const DataPosition& position) const;
  // The next `batch_size` examples from the current position, which then advances
  // (into the next epoch and its new order when this one runs out).
  Batch next_batch(int64_t batch_size, const ModelConfig& config);

  DataPosition position() const { return position_; }
  // A position from a checkpoint; one outside this data (example past the epoch) is an
  // error, since it means the data changed under the run.
  void set_position(const DataPosition& position);
  // The same check, changing nothing.
  void check_position(const DataPosition& position) const;

 private:
  int64_t segment_of(const DataPosition& position) const;

  std::vector<int32_t> tokens_;
  SpanCorruptionOptions corruption_;
  PretrainingDataOptions options_;
  SpanCorruptionLengths lengths_;
  int64_t examples_per_epoch_ = 0;
  DataPosition position_;
  mutable int64_t order_epoch_ = -1;  // the epoch order_ holds
  mutable std::vector<int64_t> order_;
};

}  // namespace sw
