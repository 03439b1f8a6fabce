// Helpers shared by the CPU benchmarks.
#pragma once

#include <sys/resource.h>

#include "core/model/batch.h"
#include "core/model/config.h"
#include "core/tensor/philox.h"

namespace sw::bench {

// The process's peak resident memory so far.
inline double peak_rss_gib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / (1024.0 * 1024.0);  // ru_maxrss is in KiB
}

// Token ids drawn from a fixed Philox stream; labels are the decoder inputs.
inline Batch random_batch(const ModelConfig& c, int64_t batch, int64_t encoder_len,
                          int64_t decoder_len) {
  Batch b;
  b.input_ids = Tensor::empty({batch, encoder_len}, DType::i32);
  b.decoder_input_ids = Tensor::empty({batch, decoder_len}, DType::i32);
  const RandomStream s(9, RandomPurpose::kData, 0, 0);
  for (int64_t i = 0; i < b.input_ids.numel(); ++i)
    b.input_ids.data<int32_t>()[i] = static_cast<int32_t>(s.bits(i) % c.vocab_size());
  for (int64_t i = 0; i < b.decoder_input_ids.numel(); ++i)
    b.decoder_input_ids.data<int32_t>()[i] =
        static_cast<int32_t>(s.bits(1 << 30 | i) % c.vocab_size());
  b.labels = b.decoder_input_ids.clone();
  return b;
}

}  // namespace sw::bench
