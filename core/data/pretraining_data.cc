#include "core/data/pretraining_data.h"

#include <algorithm>

#include "core/tensor/error.h"
#include "core/tensor/philox.h"

namespace sw {
namespace {

// RandomPurpose::kData sites: corpus.cc uses 1 for the held-out split.
constexpr uint32_t kShuffleSite = 2, kNoiseSite = 3;

}  // namespace

SpanCorruptionLengths span_corruption_lengths(int64_t input_length, int64_t target_length,
                                              double noise_density, double mean_noise_span_length) {
  SpanCorruptionLengths best;
  for (int64_t raw = 2;; ++raw) {
    const NoiseCounts c = noise_counts(raw, noise_density, mean_noise_span_length);
    const int64_t inputs = raw - c.noise + c.spans + 1, targets = c.noise + c.spans + 2;
    if (inputs > input_length) break;
    if (targets <= target_length) best = {raw, inputs, targets};
  }
  SW_CHECK_ARG(best.raw > 0, "span corruption: input length ", input_length, " and target length ",
               target_length, " leave no room for one example");
  return best;
}

SpanCorruptionData::SpanCorruptionData(std::vector<int32_t> tokens, int64_t vocab_size,
                                       int64_t num_sentinels, const PretrainingDataOptions& options)
    : tokens_(std::move(tokens)), options_(options) {
  corruption_.noise_density = options.noise_density;
  corruption_.mean_noise_span_length = options.mean_noise_span_length;
  corruption_.vocab_size = vocab_size;
  corruption_.num_sentinels = num_sentinels;
  lengths_ = span_corruption_lengths(options.input_length, options.target_length,
                                     options.noise_density, options.mean_noise_span_length);
  examples_per_epoch_ = static_cast<int64_t>(tokens_.size()) / lengths_.raw;
  SW_CHECK_ARG(examples_per_epoch_ >= 1, "pre-training data: ", tokens_.size(),
               " tokens make no example of ", lengths_.raw, " tokens");
}

int64_t SpanCorruptionData::segment_of(const DataPosition& p) const {
  if (!options_.shuffle) return p.example;
  if (order_epoch_ != p.epoch) {  // Fisher-Yates from the epoch's own Philox stream
    const RandomStream draw(options_.seed, RandomPurpose::kData, kShuffleSite,
                            static_cast<uint64_t>(p.epoch));
    order_.resize(examples_per_epoch_);
    for (int64_t i = 0; i < examples_per_epoch_; ++i) order_[i] = i;
    for (int64_t i = examples_per_epoch_ - 1; i > 0; --i) {
      const uint64_t r = static_cast<uint64_t>(draw.bits(2 * i)) << 32 | draw.bits(2 * i + 1);
      std::swap(order_[i], order_[r % static_cast<uint64_t>(i + 1)]);
    }
    order_epoch_ = p.epoch;
  }
  return order_[p.example];
}

Seq2SeqExample SpanCorruptionData::example(const DataPosition& p) const {
  SW_CHECK(p.epoch >= 0 && p.example >= 0 && p.example < examples_per_epoch_, Status::kOutOfRange,
           "pre-training data: position (epoch ", p.epoch, ", example ", p.example,
           ") is outside the ", examples_per_epoch_, " examples of an epoch");
  const int64_t segment = segment_of(p);
  const auto first = tokens_.begin() + segment * lengths_.raw;
  const std::vector<int32_t> raw(first, first + lengths_.raw);
  // Noise differs per epoch as well as per segment (T5 re-draws it every pass).
  const RandomStream noise(options_.seed, RandomPurpose::kData, kNoiseSite,
                           static_cast<uint64_t>(p.epoch * examples_per_epoch_ + segment));
  CorruptedExample c = span_corrupt(raw, corruption_, noise);
  return {std::move(c.inputs), std::move(c.targets)};
}

Batch SpanCorruptionData::next_batch(int64_t batch_size, const ModelConfig& config) {
  SW_CHECK_ARG(batch_size >= 1, "pre-training data: batch size must be >= 1, got ", batch_size);
  std::vector<Seq2SeqExample> examples;
  for (int64_t i = 0; i < batch_size; ++i) {
    examples.push_back(example(position_));
    if (++position_.example == examples_per_epoch_) position_ = {position_.epoch + 1, 0};
  }
  return make_seq2seq_batch(examples, options_.input_length, options_.target_length, config);
}

void SpanCorruptionData::set_position(const DataPosition& p) {
  check_position(p);
  position_ = p;
}

void SpanCorruptionData::check_position(const DataPosition& p) const {
  SW_CHECK(p.epoch >= 0 && p.example >= 0 && p.example < examples_per_epoch_, Status::kOutOfRange,
           "pre-training data: saved position (epoch ", p.epoch, ", example ", p.example,
           ") is outside this data's ", examples_per_epoch_,
           " examples per epoch: the data changed since it was saved");
}

}  // namespace sw
