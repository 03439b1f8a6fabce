#include "core/data/byte_tokenizer.h"

#include <algorithm>

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
  const int32_t pad = static_cast<int32_t>(config.pad_token_id());

  Batch b;
  b.input_ids = Tensor::full({batch, input_len}, DType::i32, pad);
  b.attention_mask = Tensor::zeros({batch, input_len}, DType::i32);
  b.decoder_input_ids = Tensor::full({batch, target_len}, DType::i32, pad);
  b.decoder_attention_mask = Tensor::zeros({batch, target_len}, DType::i32);
  b.labels = Tensor::full({batch, target_len}, DType::i32, -100);
  int32_t* in = b.input_ids.data<int32_t>();
  int32_t* in_mask = b.attention_mask.data<int32_t>();
  int32_t* dec = b.decoder_input_ids.data<int32_t>();
  int32_t* dec_mask = b.decoder_attention_mask.data<int32_t>();
  int32_t* labels = b.labels.data<int32_t>();
  for (int64_t s = 0; s < batch; ++s) {
    const int64_t start = batch > 1 ? span * s / (batch - 1) : 0;
    for (int64_t t = 0; t < input_len && start + t < n; ++t) {
      in[s * input_len + t] = ids[start + t];
      in_mask[s * input_len + t] = 1;
    }
    // Labels: the continuation, then eos; decoder inputs: the labels shifted right.
    std::vector<int32_t> target;
    for (int64_t t = 0; t < target_len - 1 && start + input_len + t < n; ++t)
      target.push_back(ids[start + input_len + t]);
    target.push_back(static_cast<int32_t>(config.eos_token_id()));
    for (size_t t = 0; t < target.size(); ++t) {
      labels[s * target_len + t] = target[t];
      dec[s * target_len + t] =
          t == 0 ? static_cast<int32_t>(config.decoder_start_token_id()) : target[t - 1];
      dec_mask[s * target_len + t] = 1;
    }
  }
  return b;
}

}  // namespace sw
