// Dropout on CUDA behind core/ops/dropout.h: the forward mask and scale, in place, drawn
// from the same Philox stream elements as on the cpu so the masks match (a model-parallel
// part, the spec's window, draws the whole tensor's elements). f32 and bf16 storage.
#pragma once

#include "core/ops/dropout.h"
#include "core/tensor/philox.h"
#include "core/tensor/tensor.h"

namespace sw::kernels {

void dropout(Tensor& x, const ops::DropoutSpec& spec);
// Dropout on x [rows, width]; row r draws stream row stream_rows[r] (device i64 [rows]).
void dropout_rows(Tensor& x, const ops::DropoutSpec& spec, const Tensor& stream_rows);

}  // namespace sw::kernels
