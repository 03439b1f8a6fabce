// Matrix products: tiled Eigen on the cpu (f32/f64, summed in a fixed order whatever the
// thread count), cuBLAS on a GPU (f32 with TF32 off, bf16 with f32 accumulation). Row-major
// tensors, all operands of one dtype and device, except a GPU's f32 output of bf16 inputs
// (bf16 training's weight gradients).
#pragma once

#include <vector>

#include "core/tensor/tensor.h"

namespace sw::ops {

// c = alpha * op(a) @ op(b) + beta * c for 2-D tensors, op = transpose when asked.
void matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
            double alpha = 1.0, double beta = 0.0);
Tensor matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b);

// x @ w^T for x [..., in] and w [out, in] (the layout of every HF linear weight).
Tensor linear(const Tensor& x, const Tensor& w);

// What a GEMM applies to its result as it stores it: nothing, a ReLU or the tanh GELU
// (ops::gelu). In bf16 on a GPU a cuBLASLt epilogue, so the expert activation costs no
// pass of its own over memory; elsewhere the GEMM, then the activation.
enum class Epilogue { kNone, kRelu, kGelu };

// c[i] = epilogue(op(a[i]) @ op(b[i])) for 3-D a, b, c.
void batched_matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
                    Epilogue epilogue = Epilogue::kNone);

// What the backward of a GEMM's activation needs, kept by batched_matmul_activation.
struct ActivationSaved {
  Epilogue activation = Epilogue::kNone;
  // GELU: op(a) @ op(b) before the activation. ReLU: the output c itself, whose signs are
  // the pre-activation's (c may later be zeroed or scaled up in place, as expert dropout
  // does, when the gradient of those elements is zeroed or scaled alike).
  Tensor pre_activation;
  // ReLU in bf16 on a GPU: the signs as cuBLASLt's RELU_AUX epilogue stored them (a bit
  // per element in its own layout, held in i32 words), read back by its DRELU epilogue;
  // undefined where the GEMM and the ReLU ran apart.
  Tensor relu_mask;
  bool defined() const { return activation != Epilogue::kNone; }
};

// c[i] = act(op(a[i]) @ op(b[i])) for act kRelu or kGelu, and what its backward needs.
// Both return whether one cuBLASLt call did the work (false where the GEMM and the
// activation ran apart).
bool batched_matmul_activation(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b,
                               Tensor& c, Epilogue act, ActivationSaved& saved);
// The next GEMM of the backward with the activation's derivative applied as it stores its
// result: c[i] = (op(a[i]) @ op(b[i])) * act'(pre-activation[i]), `saved` from the forward
// (in bf16 on a GPU one cuBLASLt call with a DRELU or DGELU epilogue).
bool batched_matmul_activation_backward(const Tensor& a, bool transpose_a, const Tensor& b,
                                        bool transpose_b, Tensor& c, const ActivationSaved& saved);

// Backward of y = linear(x, w) = x @ w^T: dx = dy @ w, dw = dy^T @ x (dw accumulated into
// when `accumulate`, so weights shared between uses sum their gradients).
Tensor linear_backward_input(const Tensor& dy, const Tensor& w);
void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, bool accumulate);

// Grouped GEMM over variable-size row blocks: rows [offsets[g], offsets[g + 1]) of a [R, k]
// times op(b[g]) (b [G, n, k] when transpose_b, else [G, k, n]) give the same rows of
// c [R, n]. The Switch experts: one block of kept tokens per expert.
void grouped_matmul(const Tensor& a, const Tensor& b, bool transpose_b, Tensor& c,
                    const std::vector<int64_t>& offsets);

// Its weight gradient, accumulated: dw[g] += dy[rows of g]^T @ x[rows of g] for dy [R, n],
// x [R, k], dw [G, n, k]. Groups without rows are left alone.
void grouped_weight_gradient(const Tensor& dy, const Tensor& x, const std::vector<int64_t>& offsets,
                             Tensor& dw);

// How the Switch layer lays out its expert GEMMs: the padded [E, rows, d] buffer as one
// strided-batched GEMM, or the kept rows grouped by expert, as one cuBLAS grouped call or
// one GEMM per expert.
enum class ExpertLayout { kPadded, kGroupedApi, kPerExpert };

// One measured shape class of expert GEMMs: its key and each layout's time for one
// [rows, in] x weight projection (infinity where a layout does not apply).
struct ExpertLayoutMeasurement {
  DType dtype;
  int64_t experts, in_features, out_features;
  bool transposed;  // the weight is [E, out, in] (else [E, in, out])
  bool padded_allowed;
  int64_t rows_bucket, kept_bucket;  // the largest expert's rows and all kept rows, as powers of 2
  double padded_ms, grouped_api_ms, per_expert_ms;
  ExpertLayout chosen;
};

// The layout for the expert GEMMs x @ op(weight[e]) (weight [E, out, in] when
// `transpose_weight`, else [E, in, out]) with these kept rows per expert. In bf16 on a GPU
// (the speed mode) it comes from a measured table, not a fixed rule: the first time a
// shape class is seen, one projection with this weight is timed in each layout that
// applies (a few GEMMs on the device, and a wait for them) and the fastest is kept for the
// process; different processes may so choose differently, and their bits differ. The padded
// layout is a candidate only when `padded_allowed` (its buffer at most twice the kept rows:
// not under dropless or collapsed routing). In f32 (the parity mode) the choice is fixed,
// the same in every process: padded when allowed, else one GEMM per expert. On the cpu
// always kPerExpert.
ExpertLayout choose_expert_layout(const Tensor& weight, bool transpose_weight,
                                  const std::vector<int64_t>& kept_per_expert, bool padded_allowed);
// Every shape class measured so far in this process (empty on the cpu).
std::vector<ExpertLayoutMeasurement> expert_layout_table();

// TF32 for the f32 GEMMs on GPUs, process-wide (attention's included): their inputs
// rounded to 10-bit mantissas on the tensor cores, several times faster and no longer
// within the 1e-5 parity of the cpu path. Off by default; turning it on in a build
// without CUDA is an error (there is nothing it could change).
void set_allow_tf32(bool allow);
bool allow_tf32();

// The Eigen implementations behind the device switch (gemm.cc); shapes checked there.
namespace cpu {
void matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
            double alpha, double beta);
void batched_matmul(const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b, Tensor& c,
                    Epilogue epilogue);
void grouped_matmul(const Tensor& a, const Tensor& b, bool transpose_b, Tensor& c,
                    const std::vector<int64_t>& offsets);
void grouped_weight_gradient(const Tensor& dy, const Tensor& x, const std::vector<int64_t>& offsets,
                             Tensor& dw);
}  // namespace cpu

}  // namespace sw::ops
