// Embedding lookup on CUDA behind core/ops/embedding.h: the forward gather of table rows and
// the backward scatter-add. f32 and bf16 storage.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

// table [V, d], ids i32 [...] (checked on the host) -> [..., d].
Tensor embedding(const Tensor& table, const Tensor& ids);
// dtable[id] += each dy row of that id, in token order, with no atomics: the ids are grouped
// by value on the device (a stable CUB radix sort of id and position, nothing read back by
// the host), and one thread per (distinct id, column) sums its rows in order (the CPU
// path's order, so f32 results are the same bits).
void embedding_backward(const Tensor& dy, const Tensor& ids, Tensor& dtable);

}  // namespace sw::kernels
