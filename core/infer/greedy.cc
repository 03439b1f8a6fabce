#include "core/infer/greedy.h"

#include "core/tensor/error.h"

namespace sw {

std::vector<std::vector<int32_t>> greedy_decode(const SwitchTransformer& model,
                                                const Tensor& input_ids,
                                                const Tensor& attention_mask,
                                                int64_t max_new_tokens, int64_t vocab_limit) {
  SW_CHECK_ARG(input_ids.defined() && input_ids.ndim() == 2,
               "greedy_decode: input_ids must be [B, T]");
  SW_CHECK_ARG(max_new_tokens >= 1, "greedy_decode: max_new_tokens must be >= 1, got ",
               max_new_tokens);
  const ModelConfig& c = model.config();
  const int64_t vocab = c.vocab_size();
  const int64_t limit = vocab_limit > 0 ? std::min(vocab_limit, vocab) : vocab;
  const int64_t batch = input_ids.dim(0);
  std::vector<std::vector<int32_t>> out(batch);
  std::vector<bool> done(batch, false);
  std::vector<int32_t> prefix(batch, static_cast<int32_t>(c.decoder_start_token_id()));
  for (int64_t t = 1; t <= max_new_tokens; ++t) {
    Batch b;
    b.input_ids = input_ids;
    b.attention_mask = attention_mask;
    b.decoder_input_ids = Tensor::empty({batch, t}, DType::i32);
    for (int64_t s = 0; s < batch; ++s)
      for (int64_t i = 0; i < t; ++i)
        b.decoder_input_ids.data<int32_t>()[s * t + i] =
            i == 0 ? prefix[s]
                   : (i - 1 < static_cast<int64_t>(out[s].size())
                          ? out[s][i - 1]
                          : static_cast<int32_t>(c.pad_token_id()));
    const Tensor logits = model.forward(b).logits.to(Device::cpu()).to(DType::f32);
    bool all_done = true;
    for (int64_t s = 0; s < batch; ++s) {
      if (done[s]) continue;
      const float* row = logits.data<float>() + (s * t + t - 1) * vocab;
      int64_t best = 0;
      for (int64_t v = 1; v < limit; ++v)
        if (row[v] > row[best]) best = v;
      if (best == c.eos_token_id()) {
        done[s] = true;
      } else {
        out[s].push_back(static_cast<int32_t>(best));
        all_done = false;
      }
    }
    if (all_done) break;
  }
  return out;
}

}  // namespace sw
