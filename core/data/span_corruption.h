// T5 span corruption (docs/MATH.md §1; Raffel et al. 2020, t5.data.preprocessors.span_corruption):
// a noise density of the tokens, in spans of a mean length, is cut out of the input and
// becomes the target. Each noise span is replaced in the input by one sentinel, the ids
// counted down from the top of the vocabulary; the target lists sentinel + span for every
// span, then a final sentinel, then eos.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor/philox.h"

namespace sw {

struct SpanCorruptionOptions {
  double noise_density = 0.15;
  double mean_noise_span_length = 3.0;
  int64_t vocab_size = 0;       // sentinels are vocab_size - 1, vocab_size - 2, ...
  int64_t num_sentinels = 100;  // ids at or above vocab_size - num_sentinels are reserved
  int32_t eos_id = 1;
};

struct CorruptedExample {
  std::vector<int32_t> inputs, targets;
  std::vector<bool> noise_mask;  // over the original tokens
};

// How many of `length` tokens are noise, and in how many spans (each kind of span
// non-empty): the counts random_spans_noise_mask draws a mask for.
struct NoiseCounts {
  int64_t noise = 0, spans = 0;
};
NoiseCounts noise_counts(int64_t length, double noise_density, double mean_noise_span_length);

// The noise mask of T5's random_spans_noise_mask: round(length * density) noise tokens
// (at least 1, at most length - 1) in round(noise / mean span) spans (at least 1), the
// noise and non-noise lengths each a uniformly random composition, non-noise first.
std::vector<bool> random_spans_noise_mask(int64_t length, double noise_density,
                                          double mean_noise_span_length, const RandomStream& rng);

// Corrupts one sequence of token ids (each below vocab_size - num_sentinels, none eos).
CorruptedExample span_corrupt(const std::vector<int32_t>& tokens, const SpanCorruptionOptions& o,
                              const RandomStream& rng);

}  // namespace sw
