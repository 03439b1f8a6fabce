#include "core/tensor/philox.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace sw {
namespace {

// Random123's tests/kat_vectors, the three philox4x32 10 lines: counter, key, expected.
struct KnownAnswer {
  uint32_t counter[4], key[2], expected[4];
};
constexpr KnownAnswer kKnownAnswers[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
     {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
     {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

TEST(Philox, Random123KnownAnswers) {
  for (const KnownAnswer& k : kKnownAnswers) {
    const Philox4x32 out = philox4x32_10({{k.counter[0], k.counter[1], k.counter[2], k.counter[3]}},
                                         k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(out.v[i], k.expected[i]) << "word " << i;
  }
}

// The batched host draw (what dropout masks use) gives block() word for word, across a
// 32-bit counter wrap and with every field of the counter and key in use.
TEST(Philox, BatchedBlocksEqualSingleBlocks) {
  const RandomStream s(0x123456789abcdefULL, RandomPurpose::kDropout, 0xABCDEF, 0x1122334455ULL);
  for (uint32_t first : {0u, 5u, 0xFFFFFFF8u}) {
    uint32_t words[4][RandomStream::kBatchBlocks];
    s.blocks(first, words);
    for (int l = 0; l < RandomStream::kBatchBlocks; ++l) {
      const Philox4x32 one = s.block(first + static_cast<uint32_t>(l));
      for (int w = 0; w < 4; ++w) EXPECT_EQ(words[w][l], one.v[w]) << first << " + " << l;
    }
  }
}

TEST(Philox, StreamsAreDistinctAndDeterministic) {
  const RandomStream a(7, RandomPurpose::kDropout, 3, 100);
  const RandomStream same(7, RandomPurpose::kDropout, 3, 100);
  const RandomStream other_step(7, RandomPurpose::kDropout, 3, 101);
  const RandomStream other_site(7, RandomPurpose::kDropout, 4, 100);
  const RandomStream other_purpose(7, RandomPurpose::kJitter, 3, 100);
  const RandomStream other_seed(8, RandomPurpose::kDropout, 3, 100);
  for (uint64_t i = 0; i < 64; ++i) {
    EXPECT_EQ(a.bits(i), same.bits(i));
    EXPECT_NE(a.bits(i), other_step.bits(i));
    EXPECT_NE(a.bits(i), other_site.bits(i));
    EXPECT_NE(a.bits(i), other_purpose.bits(i));
    EXPECT_NE(a.bits(i), other_seed.bits(i));
  }
}

TEST(Philox, UniformAndNormalMoments) {
  const RandomStream s(123, RandomPurpose::kInit, 1, 0);
  const int n = 400000;
  double sum = 0, sum_sq = 0, nsum = 0, nsum_sq = 0, nfourth = 0;
  float lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    const float u = s.uniform(i);
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
    sum_sq += u * u;
    const double z = s.normal(i);
    nsum += z;
    nsum_sq += z * z;
    nfourth += z * z * z * z;
  }
  EXPECT_GE(lo, 0.0f);
  EXPECT_LT(hi, 1.0f);
  // Means within ~5 standard errors.
  EXPECT_NEAR(sum / n, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(sum_sq / n - 0.25, 1.0 / 12, 0.002);
  EXPECT_NEAR(nsum / n, 0.0, 5 / std::sqrt(n));
  EXPECT_NEAR(nsum_sq / n, 1.0, 0.01);
  EXPECT_NEAR(nfourth / n, 3.0, 0.06);  // the normal's kurtosis
}

}  // namespace
}  // namespace sw
