#include "core/data/byte_tokenizer.h"

#include <algorithm>

#include "core/data/seq2seq_batch.h"

namespace sw {

std::vector<int32_t> byte_encode(const std::string& text) {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i)
    ids[i] = static_cast<int32_t>(static_cast<unsigned char>(text[i])) + kByteTokenOffset;
  return ids;
}

std::string byte_decode(const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t id : ids)
    if (id >= kByteTokenOffset && id < kByteVocabSize)
      text.push_back(static_cast<char>(id - kByteTokenOffset));
  return text;
}

Batch make_continuation_batch(const std::string& text, int64_t batch, int64_t input_len,
                              int64_t target_len, const ModelConfig& config) {
  SW_CHECK_ARG(batch >= 1 && input_len >= 1 && target_len >= 2,
               "continuation batch: need batch >= 1, input_len >= 1, target_len >= 2; got ", batch,
               ", ", input_len, ", ", target_len);
  SW_CHECK_ARG(config.vocab_size() >= kByteVocabSize,
               "continuation batch: byte tokens need vocab_size >= ", kByteVocabSize,
               ", the model has ", config.vocab_size());
  const std::vector<int32_t> ids = byte_encode(text);
  SW_CHECK_ARG(!ids.empty(), "continuation batch: the text is empty");
  const int64_t window = input_len + target_len - 1;  // the last label is eos
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t span = std::max<int64_t>(n - window, 0);
  std::vector<Seq2SeqExample> examples(batch);
  for (int64_t s = 0; s < batch; ++s) {
    const int64_t start = batch > 1 ? span * s / (batch - 1) : 0;
    Seq2SeqExample& e = examples[s];
    e.inputs.assign(ids.begin() + start, ids.begin() + std::min(n, start + input_len));
    // The continuation, then eos.
    for (int64_t t = 0; t < target_len - 1 && start + input_len + t < n; ++t)
      e.targets.push_back(ids[start + input_len + t]);
    e.targets.push_back(static_cast<int32_t>(config.eos_token_id()));
  }
  return make_seq2seq_batch(examples, input_len, target_len, config);
}

}  // namespace sw
