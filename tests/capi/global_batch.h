// The global batch the C ABI's distributed tests train on, and a replica's rows of it.
#pragma once

#include <cstdint>
#include <vector>

#include "libswitch.hpp"

namespace sw_test {

// `rows` sequences of fixed pseudo-random ids; the labels are the decoder inputs.
inline libswitch::Batch global_batch(int64_t rows, int64_t input_len, int64_t target_len) {
  libswitch::Batch whole;
  whole.batch = rows;
  whole.input_len = input_len;
  whole.target_len = target_len;
  for (int64_t i = 0; i < rows * input_len; ++i) whole.input_ids.push_back(3 + (i * 37) % 380);
  for (int64_t i = 0; i < rows * target_len; ++i)
    whole.decoder_input_ids.push_back(3 + (i * 101) % 380);
  whole.labels = whole.decoder_input_ids;
  return whole;
}

// Rows [first, first + count) of a batch.
inline libswitch::Batch rows_of(const libswitch::Batch& whole, int64_t first, int64_t count) {
  libswitch::Batch b = whole;
  b.batch = count;
  auto cut = [&](const std::vector<int32_t>& v, int64_t len) {
    return std::vector<int32_t>(v.begin() + first * len, v.begin() + (first + count) * len);
  };
  b.input_ids = cut(whole.input_ids, whole.input_len);
  b.decoder_input_ids = cut(whole.decoder_input_ids, whole.target_len);
  b.labels = cut(whole.labels, whole.target_len);
  return b;
}

}  // namespace sw_test
