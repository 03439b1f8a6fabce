// Embedding lookup: rows of a [vocab, d] table gathered by token id.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

// table [V, d], ids i32 [...] -> [..., d]. An id outside [0, V) is an out-of-range
// error naming its position and value.
Tensor embedding(const Tensor& table, const Tensor& ids);

// Backward: adds each dy row to its token's row of dtable ([V, d]); shared rows sum.
void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable);

// Throws out-of-range naming `what` and the first position whose id is outside [0, vocab).
void check_token_ids(const Tensor& ids, int64_t vocab, const char* what);

}  // namespace sw::ops
