// Greedy decoding for short outputs: the decoder is rerun over the whole prefix at every
// step (no KV cache yet), which is simple and exact but costs O(length^2).
#pragma once

#include <cstdint>
#include <vector>

#include "core/model/switch_transformer.h"

namespace sw {

// For each sequence of input_ids ([B, Te] i32 on the host, with its attention mask), up to
// max_new_tokens ids chosen by argmax over [0, vocab_limit) (vocab_limit <= 0: the model's
// whole vocabulary), stopping at eos (not included). Eval mode.
std::vector<std::vector<int32_t>> greedy_decode(const SwitchTransformer& model,
                                                const Tensor& input_ids,
                                                const Tensor& attention_mask,
                                                int64_t max_new_tokens, int64_t vocab_limit = 0);

}  // namespace sw
