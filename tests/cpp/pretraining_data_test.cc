// The pre-training data: corpus reading and splitting, span-corruption lengths, packing,
// the per-epoch shuffle that visits every segment once, and exact resume from a position.
#include "core/data/pretraining_data.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "core/data/corpus.h"
#include "core/model/config.h"
#include "core/tensor/error.h"

namespace {

constexpr int64_t kVocab = 300, kSentinels = 100;

std::vector<int32_t> token_stream(int64_t n) {
  std::vector<int32_t> tokens(n);
  for (int64_t i = 0; i < n; ++i) tokens[i] = static_cast<int32_t>(2 + i % 190);
  return tokens;
}

// The original segment back from an example: each input sentinel replaced by its span.
std::vector<int32_t> uncorrupt(const sw::Seq2SeqExample& e) {
  std::vector<int32_t> raw;
  for (int32_t id : e.inputs) {
    if (id == 1) break;
    if (id < kVocab - kSentinels) {
      raw.push_back(id);
      continue;
    }
    auto at = std::find(e.targets.begin(), e.targets.end(), id);
    for (++at; at != e.targets.end() && *at < kVocab - kSentinels && *at != 1; ++at)
      raw.push_back(*at);
  }
  return raw;
}

sw::ModelConfig config() { return sw::preset("tiny"); }

TEST(PretrainingData, LengthsFitExactlyAndMatchT5) {
  // T5's random_spans_helper: 568 raw tokens give inputs 512 and targets 114; here the
  // targets carry one more token, the final sentinel (docs/MATH.md §1).
  const sw::SpanCorruptionLengths t5 = sw::span_corruption_lengths(512, 115, 0.15, 3.0);
  EXPECT_EQ(t5.raw, 568);
  EXPECT_EQ(t5.inputs, 512);
  EXPECT_EQ(t5.targets, 115);
  EXPECT_EQ(sw::span_corruption_lengths(512, 114, 0.15, 3.0).raw, 563);
  const sw::SpanCorruptionLengths l = sw::span_corruption_lengths(128, 32, 0.15, 3.0);
  EXPECT_LE(l.inputs, 128);
  EXPECT_LE(l.targets, 32);
  const sw::SpanCorruptionLengths longer = sw::span_corruption_lengths(129, 40, 0.15, 3.0);
  EXPECT_GT(longer.raw, l.raw);
  EXPECT_THROW(sw::span_corruption_lengths(1, 1, 0.15, 3.0), sw::Error);
}

TEST(PretrainingData, EveryExampleIsPackedFullAndUncorruptsToItsSegment) {
  sw::PretrainingDataOptions o;
  o.input_length = 64;
  o.target_length = 16;
  sw::SpanCorruptionData data(token_stream(5000), kVocab, kSentinels, o);
  const int64_t raw = data.lengths().raw;
  EXPECT_EQ(data.examples_per_epoch(), 5000 / raw);
  std::set<std::vector<int32_t>> seen;
  for (int64_t i = 0; i < data.examples_per_epoch(); ++i) {
    const sw::Seq2SeqExample e = data.example({0, i});
    EXPECT_EQ(static_cast<int64_t>(e.inputs.size()), data.lengths().inputs);
    EXPECT_EQ(static_cast<int64_t>(e.targets.size()), data.lengths().targets);
    const std::vector<int32_t> original = uncorrupt(e);
    ASSERT_EQ(static_cast<int64_t>(original.size()), raw);
    const std::vector<int32_t> stream = token_stream(5000);
    bool is_segment = false;
    for (int64_t s = 0; s < data.examples_per_epoch() && !is_segment; ++s)
      is_segment = std::equal(original.begin(), original.end(), stream.begin() + s * raw);
    EXPECT_TRUE(is_segment) << "example " << i;
    seen.insert(original);
  }
  // A permutation: every segment exactly once per epoch.
  EXPECT_EQ(static_cast<int64_t>(seen.size()), data.examples_per_epoch());
}

TEST(PretrainingData, EpochsReshuffleAndPositionsResumeExactly) {
  sw::PretrainingDataOptions o;
  o.input_length = 32;
  o.target_length = 12;
  o.seed = 5;
  sw::SpanCorruptionData a(token_stream(2000), kVocab, kSentinels, o);
  const int64_t n = a.examples_per_epoch();
  EXPECT_NE(uncorrupt(a.example({0, 0})), uncorrupt(a.example({1, 0})));
  for (int i = 0; i < 3; ++i) a.next_batch(7, config());
  const sw::DataPosition saved = a.position();
  EXPECT_EQ(saved, (sw::DataPosition{21 / n, 21 % n}));
  const sw::Batch expected = a.next_batch(7, config());

  sw::SpanCorruptionData b(token_stream(2000), kVocab, kSentinels, o);
  b.set_position(saved);
  const sw::Batch resumed = b.next_batch(7, config());
  for (int64_t i = 0; i < expected.input_ids.numel(); ++i)
    ASSERT_EQ(expected.input_ids.data<int32_t>()[i], resumed.input_ids.data<int32_t>()[i]);
  for (int64_t i = 0; i < expected.labels.numel(); ++i)
    ASSERT_EQ(expected.labels.data<int32_t>()[i], resumed.labels.data<int32_t>()[i]);
  EXPECT_THROW(b.set_position({0, n}), sw::Error);
  EXPECT_THROW(b.set_position({-1, 0}), sw::Error);
}

TEST(PretrainingData, BatchesShiftTargetsAndRejectOverlongExamples) {
  const sw::ModelConfig c = config();
  const sw::Batch b = sw::make_seq2seq_batch({{{5, 6, 1}, {7, 8, 1}}}, 4, 4, c);
  const std::vector<int32_t> labels(b.labels.data<int32_t>(), b.labels.data<int32_t>() + 4);
  EXPECT_EQ(labels, (std::vector<int32_t>{7, 8, 1, -100}));
  const std::vector<int32_t> dec(b.decoder_input_ids.data<int32_t>(),
                                 b.decoder_input_ids.data<int32_t>() + 4);
  EXPECT_EQ(dec, (std::vector<int32_t>{0, 7, 8, 0}));
  EXPECT_EQ(b.attention_mask.data<int32_t>()[3], 0);
  EXPECT_THROW(sw::make_seq2seq_batch({{{5, 6, 7, 8, 1}, {1}}}, 4, 4, c), sw::Error);
}

TEST(Corpus, ReadsFortunesAndParagraphsAndSplitsDeterministically) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / "sw_corpus_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "a") << "first fortune\nline two\n%\nsecond\n%\n";
  std::ofstream(dir / "a.dat") << "binary index";
  std::ofstream(dir / "b") << "para one\n\n\npara two\nmore\n";
  const std::vector<std::string> docs = sw::read_documents(dir.string());
  EXPECT_EQ(docs, (std::vector<std::string>{"first fortune\nline two", "second", "para one",
                                            "para two\nmore"}));
  EXPECT_THROW(sw::read_documents((dir / "missing").string()), sw::Error);
  std::ofstream(dir / "empty") << "\n%\n";
  EXPECT_THROW(sw::read_documents((dir / "empty").string()), sw::Error);
  fs::remove_all(dir);

  std::vector<std::string> many;
  for (int i = 0; i < 2000; ++i) many.push_back("doc " + std::to_string(i));
  const sw::CorpusSplit s = sw::split_documents(many, 0.1, 3);
  EXPECT_EQ(s.train.size() + s.validation.size(), many.size());
  EXPECT_NEAR(static_cast<double>(s.validation.size()), 200.0, 45.0);
  EXPECT_EQ(sw::split_documents(many, 0.1, 3).validation, s.validation);
  EXPECT_NE(sw::split_documents(many, 0.1, 4).validation, s.validation);
  EXPECT_FALSE(sw::split_documents({"x", "y"}, 0.01, 0).validation.empty());
  EXPECT_THROW(sw::split_documents(many, 1.0, 3), sw::Error);
}

}  // namespace
