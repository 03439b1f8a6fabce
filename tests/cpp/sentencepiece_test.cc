// The SentencePiece tokenizer through the plugin: training is deterministic, text round
// trips, sentinels sit at the top of the vocabulary, bad models and ids are named errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/data/sentencepiece_tokenizer.h"
#include "core/tensor/error.h"

namespace {

std::vector<std::string> licence_paragraphs() {
  std::ifstream in("/usr/share/common-licenses/GPL-3");
  std::vector<std::string> paragraphs(1);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) {
      if (!paragraphs.back().empty()) paragraphs.emplace_back();
    } else {
      paragraphs.back() += line + "\n";
    }
  }
  return paragraphs;
}

const sw::SentencePieceTokenizer& tokenizer() {
  static const sw::SentencePieceTokenizer t = [] {
    sw::SentencePieceOptions o;
    o.vocab_size = 512;
    return sw::SentencePieceTokenizer::train(licence_paragraphs(), o);
  }();
  return t;
}

class SentencePieceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!sw::sentencepiece_available(&why)) GTEST_SKIP() << why;
  }
};

TEST_F(SentencePieceTest, VocabularyHasT5SpecialsSentinelsAndPadding) {
  const auto& t = tokenizer();
  EXPECT_EQ(t.piece_count(), 512);
  EXPECT_EQ(t.vocab_size(), 612);
  EXPECT_EQ(t.padded_vocab_size(), 640);
  EXPECT_EQ(t.piece(0), "<pad>");
  EXPECT_EQ(t.piece(1), "</s>");
  EXPECT_EQ(t.piece(2), "<unk>");
  EXPECT_EQ(t.sentinel_id(0), 611);
  EXPECT_EQ(t.sentinel_id(99), 512);
  EXPECT_THROW(t.sentinel_id(100), sw::Error);
}

TEST_F(SentencePieceTest, TrainingIsDeterministic) {
  sw::SentencePieceOptions o;
  o.vocab_size = 512;
  const auto again = sw::SentencePieceTokenizer::train(licence_paragraphs(), o);
  EXPECT_EQ(again.model_proto(), tokenizer().model_proto());
}

// More distinct characters than pieces: SentencePiece's own message comes through (it was
// once lost to "unknown error"), and a lower character coverage trains.
TEST_F(SentencePieceTest, TooManyCharactersIsSentencePiecesOwnErrorAndCoverageFixesIt) {
  std::vector<std::string> documents = licence_paragraphs();
  std::string many;
  for (char32_t c = 0x4e00; c < 0x4e00 + 600; ++c) {  // 600 CJK ideographs, in UTF-8
    many += static_cast<char>(0xe0 | (c >> 12));
    many += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
    many += static_cast<char>(0x80 | (c & 0x3f));
  }
  documents.push_back(many);
  sw::SentencePieceOptions o;
  o.vocab_size = 512;
  std::string message;
  try {
    sw::SentencePieceTokenizer::train(documents, o);
  } catch (const sw::Error& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("Vocabulary size is smaller than required_chars"), std::string::npos)
      << message;
  o.character_coverage = 0.98;  // the 600 ideographs, once each, are under 2% of characters
  EXPECT_EQ(sw::SentencePieceTokenizer::train(documents, o).piece_count(), 512);
}

TEST_F(SentencePieceTest, TextRoundTripsAndUnseenCharactersFallBackToBytes) {
  const auto& t = tokenizer();
  const std::string text = "The GNU General Public License is a free, copyleft license.";
  const std::vector<int32_t> ids = t.encode(text);
  EXPECT_LT(ids.size(), text.size() / 2);  // pieces, not characters
  for (int32_t id : ids) {
    EXPECT_GT(id, 2);
    EXPECT_LT(id, t.piece_count());
  }
  EXPECT_EQ(t.decode(ids), text);
  const std::string unseen = "Zürich ∑ 42";
  EXPECT_EQ(t.decode(t.encode(unseen)), unseen);
  for (int32_t id : t.encode(unseen)) EXPECT_NE(id, 2) << "unk";
}

TEST_F(SentencePieceTest, SentinelsEncodeAndDecodeAsExtraIds) {
  const auto& t = tokenizer();
  const std::vector<int32_t> ids = t.encode("free <extra_id_0> software <extra_id_7> now");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_NE(std::find(ids.begin(), ids.end(), t.sentinel_id(0)), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), t.sentinel_id(7)), ids.end());
  // Text after a sentinel starts a new word, as with HF's T5 tokenizer.
  EXPECT_EQ(t.decode(ids), "free<extra_id_0> software<extra_id_7> now");
  // Not a sentinel: the text stays text.
  EXPECT_EQ(t.decode(t.encode("<extra_id_x>")), "<extra_id_x>");
  // pad and eos are dropped from decoded text; ids beyond the vocabulary are errors.
  EXPECT_EQ(t.decode({0, t.encode("free")[0], 1}), t.decode(t.encode("free")));
  try {
    t.decode({5, static_cast<int32_t>(t.vocab_size())});
    FAIL() << "an id past the vocabulary decoded";
  } catch (const sw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 612"), std::string::npos) << e.what();
  }
}

TEST_F(SentencePieceTest, SaveLoadRoundTripAndCorruptModelsAreNamed) {
  const std::string path = ::testing::TempDir() + "sw_spm_test.model";
  tokenizer().save(path);
  const auto loaded = sw::SentencePieceTokenizer::load(path);
  EXPECT_EQ(loaded.model_proto(), tokenizer().model_proto());
  EXPECT_EQ(loaded.encode("copyleft"), tokenizer().encode("copyleft"));

  std::ofstream(path, std::ios::binary | std::ios::trunc) << "not a model";
  try {
    sw::SentencePieceTokenizer::load(path);
    FAIL() << "a corrupt model loaded";
  } catch (const sw::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
  EXPECT_THROW(sw::SentencePieceTokenizer::load(path), sw::Error);
}

}  // namespace
