// cuBLAS behind core/ops/gemm.h for CUDA tensors. f32 runs with TF32 off (the parity
// mode), bf16 with f32 accumulation, f64 in f64. Row-major tensors, as on the CPU.
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace sw::kernels {

void matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
            double alpha, double beta);
void batched_matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b,
                    Tensor& c);
// bf16: one problem per non-empty group through cublasGemmGroupedBatchedEx; f32 and f64
// (the parity modes): one cublasGemmEx per group.
void grouped_matmul(const Tensor& a, const Tensor& b, bool transpose_b, Tensor& c,
                    const std::vector<int64_t>& offsets);

}  // namespace sw::kernels
