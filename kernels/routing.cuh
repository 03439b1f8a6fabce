// CUDA kernels behind core/ops/routing.h: router top-1, jitter, capacity assignment
// (per-group running counts, then a CUB scan into the grouped per-expert layout),
// dispatch and combine. The router always runs in f32 (SPEC §2).
#pragma once

#include <vector>

#include "core/tensor/philox.h"
#include "core/tensor/tensor.h"

namespace sw::kernels {

// out = x * U(1 - eps, 1 + eps) elementwise, drawn from `stream` as on the cpu.
void jitter(const Tensor& x, Tensor& out, const RandomStream& stream, double eps);

// logits f32 [N, E] -> probs [N, E], expert index i32 [N] (ties to the lowest), gate [N].
void softmax_top1(const Tensor& logits, Tensor& probs, Tensor& expert_index, Tensor& gate);

// The whole router in one pass over x (f32 or bf16 [N, d]) with an f32 weight [E, d]:
// f32 logits, then softmax_top1's outputs. Reads x once instead of converting it and
// running a skinny f32 GEMM; each warp re-reads every expert's weight row, so it pays
// only for few experts.
constexpr int64_t kFusedRouterMaxExperts = 8;  // measured on H200: faster at 8, slower at 32
void fused_router(const Tensor& x, const Tensor& weight, Tensor& logits, Tensor& probs,
                  Tensor& expert_index, Tensor& gate);

struct DeviceAssignment {
  Tensor slot, row;  // i32 [N] on the device
  std::vector<int64_t> kept_per_expert, expert_offset;
  int64_t dropped = 0;
};
DeviceAssignment assign_capacity(const Tensor& expert_index, int64_t num_experts,
                                 int64_t group_size, int64_t capacity);

// padded[t] = expert_index[t] * rows_per_expert + slot[t], or -1 when dropped.
Tensor padded_rows(const Tensor& expert_index, const Tensor& slot, int64_t rows_per_expert);

// x [N, d] -> [kept, d] by row; combine: y[t] = gate[t] * out[row[t]], 0 when row < 0.
Tensor dispatch(const Tensor& x, const Tensor& row, int64_t kept);
Tensor combine(const Tensor& expert_out, const Tensor& row, const Tensor& gate);

// Dropout on x [rows, width]; row r draws stream row stream_rows[r] (device i64 [rows]).
void dropout_rows(Tensor& x, double rate, const RandomStream& stream, const Tensor& stream_rows);

}  // namespace sw::kernels
