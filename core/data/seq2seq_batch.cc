#include "core/data/seq2seq_batch.h"

#include "core/tensor/error.h"

namespace sw {

Batch make_seq2seq_batch(const std::vector<Seq2SeqExample>& examples, int64_t input_length,
                         int64_t target_length, const ModelConfig& config) {
  SW_CHECK_ARG(!examples.empty(), "seq2seq batch: no examples");
  SW_CHECK_ARG(input_length >= 1 && target_length >= 1, "seq2seq batch: lengths must be >= 1, got ",
               input_length, " and ", target_length);
  const int64_t batch = static_cast<int64_t>(examples.size());
  const int32_t pad = static_cast<int32_t>(config.pad_token_id());
  Batch b;
  b.input_ids = Tensor::full({batch, input_length}, DType::i32, pad);
  b.attention_mask = Tensor::zeros({batch, input_length}, DType::i32);
  b.decoder_input_ids = Tensor::full({batch, target_length}, DType::i32, pad);
  b.decoder_attention_mask = Tensor::zeros({batch, target_length}, DType::i32);
  b.labels = Tensor::full({batch, target_length}, DType::i32, -100);
  for (int64_t s = 0; s < batch; ++s) {
    const Seq2SeqExample& e = examples[s];
    SW_CHECK_ARG(static_cast<int64_t>(e.inputs.size()) <= input_length && !e.inputs.empty(),
                 "seq2seq batch: example ", s, " has ", e.inputs.size(),
                 " input tokens; the input length is ", input_length);
    SW_CHECK_ARG(static_cast<int64_t>(e.targets.size()) <= target_length && !e.targets.empty(),
                 "seq2seq batch: example ", s, " has ", e.targets.size(),
                 " target tokens; the target length is ", target_length);
    for (size_t t = 0; t < e.inputs.size(); ++t) {
      b.input_ids.data<int32_t>()[s * input_length + t] = e.inputs[t];
      b.attention_mask.data<int32_t>()[s * input_length + t] = 1;
    }
    for (size_t t = 0; t < e.targets.size(); ++t) {
      b.labels.data<int32_t>()[s * target_length + t] = e.targets[t];
      b.decoder_input_ids.data<int32_t>()[s * target_length + t] =
          t == 0 ? static_cast<int32_t>(config.decoder_start_token_id()) : e.targets[t - 1];
      b.decoder_attention_mask.data<int32_t>()[s * target_length + t] = 1;
    }
  }
  return b;
}

}  // namespace sw
