// T5 span corruption: the mask's counts follow the formulas, the spans are a random
// composition, and inputs + targets always give back the original sequence.
#include "core/data/span_corruption.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/tensor/error.h"

namespace sw {
namespace {

std::vector<int32_t> sequence(int64_t n) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>(2 + i % 900);  // no eos, no sentinel
  return t;
}

SpanCorruptionOptions options() {
  SpanCorruptionOptions o;
  o.vocab_size = 1024;
  return o;
}

// Rebuilds the original tokens: each sentinel in the inputs is replaced by the tokens that
// follow the same sentinel in the targets.
std::vector<int32_t> reconstruct(const CorruptedExample& ex, int64_t first_sentinel) {
  std::vector<int32_t> out;
  for (int32_t t : ex.inputs) {
    if (t == 1) break;  // eos
    if (t < first_sentinel) {
      out.push_back(t);
      continue;
    }
    auto it = std::find(ex.targets.begin(), ex.targets.end(), t);
    EXPECT_NE(it, ex.targets.end()) << "sentinel " << t << " missing from the targets";
    for (++it; it != ex.targets.end() && *it < first_sentinel && *it != 1; ++it) out.push_back(*it);
  }
  return out;
}

TEST(SpanCorruption, CountsFollowTheFormulas) {
  // 512 tokens: round(0.15 * 512) = 77 noise tokens in round(77 / 3) = 26 spans.
  double mean_first_span = 0;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    const std::vector<bool> mask =
        random_spans_noise_mask(512, 0.15, 3.0, RandomStream(seed, RandomPurpose::kData, 0, 0));
    ASSERT_EQ(mask.size(), 512u);
    int64_t noise = 0, spans = 0, first_span = 0;
    for (size_t i = 0; i < mask.size(); ++i) {
      noise += mask[i];
      if (mask[i] && (i == 0 || !mask[i - 1])) ++spans;
      if (mask[i] && spans == 1) ++first_span;
    }
    EXPECT_EQ(noise, 77);
    EXPECT_EQ(spans, 26);
    EXPECT_FALSE(mask.front());  // non-noise first, as T5
    EXPECT_TRUE(mask.back());    // and noise last
    mean_first_span += first_span / 200.0;
  }
  // A uniform composition of 77 into 26 parts: each part has mean 77 / 26 = 2.96.
  EXPECT_NEAR(mean_first_span, 77.0 / 26.0, 0.4);
}

TEST(SpanCorruption, InputsAndTargetsGiveBackTheSequence) {
  const SpanCorruptionOptions o = options();
  for (int64_t n : {2, 3, 10, 57, 512}) {
    const std::vector<int32_t> tokens = sequence(n);
    const CorruptedExample ex =
        span_corrupt(tokens, o, RandomStream(n, RandomPurpose::kData, 1, 0));
    EXPECT_EQ(reconstruct(ex, o.vocab_size - o.num_sentinels), tokens) << n;
    EXPECT_EQ(ex.inputs.back(), o.eos_id);
    EXPECT_EQ(ex.targets.back(), o.eos_id);
    // Sentinels count down from the top; the target's last sentinel is the next one down.
    int32_t expected = static_cast<int32_t>(o.vocab_size - 1);
    for (int32_t t : ex.inputs)
      if (t >= o.vocab_size - o.num_sentinels) {
        EXPECT_EQ(t, expected--);
      }
    EXPECT_EQ(ex.targets[ex.targets.size() - 2], expected);
    EXPECT_EQ(ex.targets.front(), o.vocab_size - 1);
  }
}

TEST(SpanCorruption, ExactForAFixedSeed) {
  const SpanCorruptionOptions o = options();
  const std::vector<int32_t> tokens = sequence(20);
  const RandomStream rng(42, RandomPurpose::kData, 3, 7);
  const CorruptedExample a = span_corrupt(tokens, o, rng), b = span_corrupt(tokens, o, rng);
  EXPECT_EQ(a.inputs, b.inputs);
  EXPECT_EQ(a.targets, b.targets);
  // 20 tokens: 3 noise tokens in round(3 / 3) = 1 span, which comes last: whatever the
  // seed, the output is fixed.
  std::vector<int32_t> inputs(tokens.begin(), tokens.begin() + 17);
  inputs.push_back(1023);
  inputs.push_back(1);
  const std::vector<int32_t> targets = {1023, tokens[17], tokens[18], tokens[19], 1022, 1};
  EXPECT_EQ(a.inputs, inputs);
  EXPECT_EQ(a.targets, targets);
  const CorruptedExample other =
      span_corrupt(tokens, o, RandomStream(42, RandomPurpose::kData, 3, 8));
  const CorruptedExample long_a = span_corrupt(sequence(300), o, rng);
  const CorruptedExample long_b =
      span_corrupt(sequence(300), o, RandomStream(42, RandomPurpose::kData, 3, 8));
  EXPECT_NE(long_a.noise_mask, long_b.noise_mask);  // another step, another mask
}

TEST(SpanCorruption, BadInputIsRefused) {
  SpanCorruptionOptions o = options();
  const RandomStream rng(1, RandomPurpose::kData, 0, 0);
  EXPECT_THROW(span_corrupt({5, 1, 7}, o, rng), Error);     // eos inside
  EXPECT_THROW(span_corrupt({5, 1000, 7}, o, rng), Error);  // a sentinel id
  EXPECT_THROW(span_corrupt({5}, o, rng), Error);           // too short
  o.num_sentinels = 3;
  o.vocab_size = 1000;
  EXPECT_THROW(span_corrupt(sequence(400), o, rng), Error);  // 20 spans, 3 sentinels
  EXPECT_THROW(random_spans_noise_mask(10, 1.5, 3, rng), Error);
}

}  // namespace
}  // namespace sw
