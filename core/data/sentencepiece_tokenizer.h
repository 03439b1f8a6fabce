// SentencePiece tokenizers the T5 way: pad 0, eos 1, unk 2 and no bos; the trained pieces
// are followed by `num_sentinels` sentinel ids counted down from the top of the
// tokenizer's vocabulary (id vocab_size() - 1 - k is "<extra_id_k>", as in T5 and HF),
// and models pad the vocabulary to a multiple of 128 (padded_vocab_size()).
// SentencePiece itself runs in the plugin libswitch_spm.so (see sentencepiece_plugin.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sw {

struct SentencePieceOptions {
  int64_t vocab_size = 4000;  // SentencePiece pieces, pad/eos/unk included
  std::string model_type = "unigram";
  double character_coverage = 1.0;
  bool byte_fallback = true;  // unseen characters become bytes, never unk
  int64_t num_sentinels = 100;
  int64_t num_threads = 1;  // 1: the same model from the same text on every machine
};

class SentencePieceTokenizer {
 public:
  // Trains on documents (text; each line a SentencePiece sentence).
  static SentencePieceTokenizer train(const std::vector<std::string>& documents,
                                      const SentencePieceOptions& options);
  // From a serialized SentencePiece ModelProto (a `.model` file's bytes).
  static SentencePieceTokenizer from_model(std::string model_proto, int64_t num_sentinels = 100);
  static SentencePieceTokenizer load(const std::string& path, int64_t num_sentinels = 100);
  // Written to a temporary name and renamed, so an existing file is never half replaced.
  void save(const std::string& path) const;

  // "<extra_id_k>" in the text becomes sentinel k.
  std::vector<int32_t> encode(const std::string& text) const;
  // Plain text only (corpus data): "<extra_id_k>" stays text, no sentinel is produced.
  std::vector<int32_t> encode_text(const std::string& text) const;
  // pad and eos are skipped; sentinels come back as "<extra_id_k>"; an id outside the
  // tokenizer's vocabulary is an error naming it.
  std::string decode(const std::vector<int32_t>& ids) const;
  std::string piece(int32_t id) const;

  int64_t piece_count() const { return piece_count_; }
  int64_t num_sentinels() const { return num_sentinels_; }
  int64_t vocab_size() const { return piece_count_ + num_sentinels_; }
  int64_t padded_vocab_size() const { return (vocab_size() + 127) / 128 * 128; }
  int32_t sentinel_id(int64_t k) const;
  const std::string& model_proto() const { return model_proto_; }

 private:
  SentencePieceTokenizer() = default;
  std::string model_proto_;
  std::shared_ptr<void> processor_;
  int64_t piece_count_ = 0, num_sentinels_ = 0;
};

// Whether this build has SentencePiece, and the plugin path it loads (or the reason not).
bool sentencepiece_available(std::string* why_not = nullptr);

}  // namespace sw
