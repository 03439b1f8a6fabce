#include "core/data/span_corruption.h"

#include <algorithm>
#include <cmath>

#include "core/tensor/error.h"

namespace sw {
namespace {

// A uniformly random composition of `items` into `segments` positive parts: choose which
// of the items - 1 gaps start a new segment (a Philox-driven shuffle, words from `offset`).
std::vector<int64_t> random_segmentation(int64_t items, int64_t segments, const RandomStream& rng,
                                         uint64_t offset) {
  std::vector<int64_t> gaps(items - 1);
  for (int64_t i = 0; i < items - 1; ++i) gaps[i] = i;
  // Fisher-Yates: only the first segments - 1 positions of the shuffle are needed.
  for (int64_t i = 0; i < segments - 1; ++i) {
    const int64_t j =
        i + static_cast<int64_t>(rng.bits(offset + i) % static_cast<uint64_t>(items - 1 - i));
    std::swap(gaps[i], gaps[j]);
  }
  std::vector<int64_t> cuts(gaps.begin(), gaps.begin() + (segments - 1));
  std::sort(cuts.begin(), cuts.end());
  std::vector<int64_t> lengths;
  int64_t previous = 0;
  for (int64_t cut : cuts) {  // a segment ends after item `cut`
    lengths.push_back(cut + 1 - previous);
    previous = cut + 1;
  }
  lengths.push_back(items - previous);
  return lengths;
}

}  // namespace

NoiseCounts noise_counts(int64_t length, double noise_density, double mean_noise_span_length) {
  int64_t noise = std::llround(static_cast<double>(length) * noise_density);
  noise = std::min(std::max<int64_t>(noise, 1), length - 1);
  const int64_t spans =
      std::max<int64_t>(1, std::llround(static_cast<double>(noise) / mean_noise_span_length));
  // There must be room for `spans` non-empty spans of each kind.
  return {noise, std::min({spans, noise, length - noise})};
}

std::vector<bool> random_spans_noise_mask(int64_t length, double noise_density,
                                          double mean_noise_span_length, const RandomStream& rng) {
  SW_CHECK_ARG(length >= 2, "span corruption: a sequence needs at least 2 tokens, got ", length);
  SW_CHECK_ARG(noise_density > 0 && noise_density < 1,
               "span corruption: noise_density must be in (0, 1), got ", noise_density);
  SW_CHECK_ARG(mean_noise_span_length >= 1,
               "span corruption: mean_noise_span_length must be >= 1, got ",
               mean_noise_span_length);
  const NoiseCounts counts = noise_counts(length, noise_density, mean_noise_span_length);
  const int64_t noise = counts.noise, span_count = counts.spans;
  const std::vector<int64_t> noise_lengths = random_segmentation(noise, span_count, rng, 0);
  const std::vector<int64_t> clean_lengths =
      random_segmentation(length - noise, span_count, rng, static_cast<uint64_t>(length));
  std::vector<bool> mask;
  mask.reserve(length);
  for (int64_t s = 0; s < span_count; ++s) {
    mask.insert(mask.end(), clean_lengths[s], false);
    mask.insert(mask.end(), noise_lengths[s], true);
  }
  return mask;
}

CorruptedExample span_corrupt(const std::vector<int32_t>& tokens, const SpanCorruptionOptions& o,
                              const RandomStream& rng) {
  SW_CHECK_ARG(o.vocab_size > o.num_sentinels && o.num_sentinels >= 1,
               "span corruption: vocab_size ", o.vocab_size, " must exceed num_sentinels ",
               o.num_sentinels);
  const int64_t first_sentinel = o.vocab_size - o.num_sentinels;
  for (size_t i = 0; i < tokens.size(); ++i)
    SW_CHECK(tokens[i] >= 0 && tokens[i] < first_sentinel && tokens[i] != o.eos_id,
             Status::kOutOfRange, "span corruption: token ", tokens[i], " at position ", i,
             " is eos or outside [0, ", first_sentinel, ") (the ids above are sentinels)");
  CorruptedExample ex;
  ex.noise_mask = random_spans_noise_mask(static_cast<int64_t>(tokens.size()), o.noise_density,
                                          o.mean_noise_span_length, rng);
  int32_t sentinel = static_cast<int32_t>(o.vocab_size - 1);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!ex.noise_mask[i]) {
      ex.inputs.push_back(tokens[i]);
      continue;
    }
    if (i == 0 || !ex.noise_mask[i - 1]) {  // a span starts: one sentinel for all of it
      SW_CHECK(sentinel >= first_sentinel, Status::kOutOfRange, "span corruption: more than ",
               o.num_sentinels, " noise spans in one sequence of ", tokens.size(), " tokens");
      ex.inputs.push_back(sentinel);
      ex.targets.push_back(sentinel);
      --sentinel;
    }
    ex.targets.push_back(tokens[i]);
  }
  SW_CHECK(sentinel >= first_sentinel, Status::kOutOfRange, "span corruption: the final sentinel ",
           "would fall below the ", o.num_sentinels, " reserved ids");
  ex.targets.push_back(sentinel);  // the final sentinel
  ex.inputs.push_back(o.eos_id);
  ex.targets.push_back(o.eos_id);
  return ex;
}

}  // namespace sw
