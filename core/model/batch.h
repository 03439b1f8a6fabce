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

// One stack's ids: a non-empty i32 [batch, length]; `what` names it in errors.
void check_ids(const Tensor& ids, const char* what);
// An optional padding mask (undefined: none) of ids' shape, i32, values 0 or 1.
void check_mask(const Tensor& mask, const Tensor& ids, const char* what);

}  // namespace sw
