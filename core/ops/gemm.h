// Matrix products through Eigen (and cuBLAS on the GPU).
#pragma once

#include "core/tensor/tensor.h"

namespace sw::ops {

// c = alpha * op(a) @ op(b) + beta * c for 2-D tensors, op = transpose when asked.
void matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
            double alpha = 1.0, double beta = 0.0);
Tensor matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b);

// x @ w^T for x [..., in] and w [out, in] (the layout of every HF linear weight).
Tensor linear(const Tensor& x, const Tensor& w);

// c[i] = op(a[i]) @ op(b[i]) for 3-D a, b, c. When `rows` is given (length batch), only
// the first rows[i] rows of a[i] and c[i] are used: the rest of c[i] is set to zero
// (experts that received fewer tokens than their capacity).
void batched_matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
                    const int64_t* rows = nullptr);

}  // namespace sw::ops
