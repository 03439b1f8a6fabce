// The tokenizer input path: arbitrary bytes (invalid UTF-8, sentinel-like markup, NULs)
// through SentencePiece encode and decode, the same bytes read as token ids (out of range
// ones must be refused, not read), and the byte tokenizer.
#include <cstring>
#include <vector>

#include "core/data/byte_tokenizer.h"
#include "core/data/sentencepiece_tokenizer.h"
#include "tests/fuzz/fuzz.h"

namespace {

const sw::SentencePieceTokenizer* tokenizer() {
  static const sw::SentencePieceTokenizer* t = []() -> const sw::SentencePieceTokenizer* {
    if (!sw::sentencepiece_available()) return nullptr;
    sw::SentencePieceOptions o;
    o.vocab_size = 60;
    o.num_sentinels = 4;
    std::vector<std::string> docs;
    for (int i = 0; i < 50; ++i)
      docs.push_back("the quick brown fox " + std::to_string(i) + " jumps over the lazy dog");
    return new sw::SentencePieceTokenizer(sw::SentencePieceTokenizer::train(docs, o));
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  if (const sw::SentencePieceTokenizer* t = tokenizer()) {
    sw::fuzz::expect_clean([&] {
      const std::vector<int32_t> encoded = t->encode(text);
      for (int32_t id : encoded)
        if (id < 0 || id >= t->vocab_size()) abort();  // ids the model can embed
      t->decode(encoded);
      t->encode_text(text);
    });
    sw::fuzz::expect_clean([&] { t->decode(ids); });
  }
  sw::fuzz::expect_clean([&] { sw::byte_decode(sw::byte_encode(text)); });
  sw::fuzz::expect_clean([&] { sw::byte_decode(ids); });
  return 0;
}
