// Embedding lookup: rows of a [vocab, d] table gathered by token id.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

// table [V, d] (f32/f64 on the cpu, f32/bf16 on a GPU), ids i32 [...] on the table's
// device -> [..., d] in the table's dtype. An id outside [0, V) is an out-of-range error
// naming its position and value.
// With ids_checked the caller has checked the ids against the table (check_token_ids on
// the host batch), and a GPU's ids are not copied back to be checked again (a wait for the
// device); the same for the backward.
Tensor embedding(const Tensor& table, const Tensor& ids, bool ids_checked = false);

// Backward: adds each dy row ([..., d] like the forward's output) to its token's row of
// dtable ([V, d]); rows of repeated ids sum, in token order.
void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable,
                        bool ids_checked = false);

// Throws out-of-range naming `what` and the first position whose id is outside [0, vocab).
// Ids on a GPU are copied to the host to be checked.
void check_token_ids(const Tensor& ids, int64_t vocab, const char* what);

// The Eigen implementations behind the device switch (embedding.cc).
namespace cpu {
Tensor embedding(const Tensor& table, const Tensor& ids);
void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable);
}  // namespace cpu

}  // namespace sw::ops
