// cuBLAS behind core/ops/gemm.h for CUDA tensors. f32 runs with TF32 off (the parity
// mode) unless set_allow_tf32, bf16 with f32 accumulation, f64 in f64. Row-major tensors, as on the
// CPU.
#pragma once

#include <vector>

#include "core/ops/gemm.h"
#include "core/tensor/tensor.h"

namespace sw::kernels {

// TF32 for f32 GEMMs (ops::set_allow_tf32); device_context.h's f32_compute_type reads it.
void set_allow_tf32(bool allow);
bool allow_tf32();

void matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
            double alpha, double beta);
void batched_matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
                    ops::Epilogue epilogue = ops::Epilogue::kNone);
// ops::batched_matmul_activation's bf16 path, one cuBLASLt call (RELU_AUX: the output and
// its sign bits; GELU_AUX: the output and its pre-activation), filling `saved` (its
// activation set by the caller). False, with nothing written, for other dtypes or where
// cuBLASLt has no algorithm: the caller runs the GEMM and the activation apart.
bool batched_matmul_activation(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b,
                               Tensor& c, ops::ActivationSaved& saved);
// Its backward GEMM with a DRELU (from the sign bits) or DGELU epilogue; false as above,
// and where the forward ran apart (no sign bits).
bool batched_matmul_activation_backward(const Tensor& a, bool transpose_a, const Tensor& b,
                                        bool transpose_b, Tensor& c,
                                        const ops::ActivationSaved& saved);
// f32 logits [N, E] = x [N, d] @ w^T for bf16 x and f32 w [E, d], at f32 precision on the
// bf16 tensor cores: w is split into three bf16 parts (split_bf16x3) and the three
// products accumulate in f32 (bf16 x bf16 products are exact in f32).
void matmul_bf16_by_f32(const Tensor& x, const Tensor& w, Tensor& logits);

// How grouped_matmul drives cuBLAS: one cublasGemmEx per non-empty group, or one
// cublasGemmGroupedBatchedEx call (bf16 only). kAuto takes the faster for the shape class,
// timed on the device the first time it is seen (kernels/expert_layout.cc); f32 and f64
// (the parity modes) take one GEMM per group. Under kAuto, groups all of the same
// non-zero size (the padded layout's) run as one strided-batched GEMM in every dtype.
enum class GroupedGemm { kAuto, kPerGroup, kGroupedApi };
void grouped_matmul(const Tensor& a, const Tensor& b, bool transpose_b, Tensor& c,
                    const std::vector<int64_t>& offsets, GroupedGemm strategy = GroupedGemm::kAuto);

// dw[g] += dy[rows of g]^T @ x[rows of g], one GEMM per non-empty group.
void grouped_weight_gradient(const Tensor& dy, const Tensor& x, const std::vector<int64_t>& offsets,
                             Tensor& dw);

}  // namespace sw::kernels
