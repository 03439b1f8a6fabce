// Embedding lookup on CUDA behind core/ops/embedding.h: the forward gather of table rows.
// f32 and bf16 storage.
#pragma once

#include "core/tensor/tensor.h"

namespace sw::kernels {

// table [V, d], ids i32 [...] (checked on the host) -> [..., d].
Tensor embedding(const Tensor& table, const Tensor& ids);

}  // namespace sw::kernels
