// A byte-level tokenizer (ByT5's scheme: id = byte + 3 after pad 0, eos 1, unk 2) and
// batches of real text for it. It needs no trained model, so the demo and tests can run
// on any text; SentencePiece is the tokenizer for real vocabularies.
#pragma once

#include <string>
#include <vector>

#include "core/model/batch.h"
#include "core/model/config.h"

namespace sw {

constexpr int32_t kByteTokenOffset = 3;
constexpr int64_t kByteVocabSize = 256 + kByteTokenOffset;

std::vector<int32_t> byte_encode(const std::string& text);
// Ids below the offset (pad, eos, unk) and above the byte range are skipped.
std::string byte_decode(const std::vector<int32_t>& ids);

// A continuation batch from text: sequence b reads input_len bytes as encoder input and
// the next target_len bytes as its target (labels end with eos; decoder inputs are the
// labels shifted right behind decoder_start_token_id). Windows are taken at evenly spaced
// offsets; text too short for one window is padded, and the padding is masked.
Batch make_continuation_batch(const std::string& text, int64_t batch, int64_t input_len,
                              int64_t target_len, const ModelConfig& config);

}  // namespace sw
