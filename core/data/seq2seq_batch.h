// Sequence-to-sequence examples (token ids in, token ids out) made into a padded batch.
#pragma once

#include <cstdint>
#include <vector>

#include "core/model/batch.h"
#include "core/model/config.h"

namespace sw {

struct Seq2SeqExample {
  std::vector<int32_t> inputs, targets;  // targets end with eos
};

// A padded batch: inputs and targets cut to the lengths are an error (never silently
// truncated); decoder inputs are the targets shifted right behind decoder_start; labels
// are the targets with -100 on padding.
Batch make_seq2seq_batch(const std::vector<Seq2SeqExample>& examples, int64_t input_length,
                         int64_t target_length, const ModelConfig& config);

}  // namespace sw
