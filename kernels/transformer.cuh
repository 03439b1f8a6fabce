// CUDA kernels for the rest of the T5 forward behind core/ops: embedding lookup, RMSNorm,
// attention (cuBLAS strided-batched GEMMs around one fused softmax kernel with bias, mask
// and dropout), cross-entropy, and plain dropout. f32 (the parity mode) and bf16 storage;
// norms, softmax and losses accumulate in f32.
#pragma once

#include "core/ops/attention.h"
#include "core/ops/dropout.h"
#include "core/tensor/tensor.h"

namespace sw::kernels {

// table [V, d], ids i32 [...] (checked on the host) -> [..., d].
Tensor embedding(const Tensor& table, const Tensor& ids);
// x [rows, d], weight [d]; inv_rms (optional) receives f32 [rows].
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor* inv_rms);
// As ops::attention; probs (optional) receives the softmax in f32 [B, H, Tq, Tk].
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 const ops::AttentionInputs& in, Tensor* probs);
// logits [N, V], labels i32 [N]: per-row loss f32 [N], 0 where the label is ignored.
Tensor cross_entropy_rows(const Tensor& logits, const Tensor& labels, int32_t ignore_index);
void dropout(Tensor& x, const ops::DropoutSpec& spec);

}  // namespace sw::kernels
