// A batch for the encoder-decoder: row-major i32 tensors.
#pragma once

#include "core/tensor/tensor.h"

namespace sw {

// Masks default to all ones; labels are optional (-100 = ignored by the loss).
struct Batch {
  Tensor input_ids;               // [B, Te]
  Tensor attention_mask;          // [B, Te], 1 = token, 0 = padding
  Tensor decoder_input_ids;       // [B, Td]
  Tensor decoder_attention_mask;  // [B, Td]
  Tensor labels;                  // [B, Td]
};

}  // namespace sw
