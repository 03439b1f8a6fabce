#include <cmath>

#include "kernels/attention.cuh"
#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/reduce.cuh"

namespace sw::kernels {
namespace {

// One block per score row (b, h, i): bias, mask (lowest f32 where masked, as HF), softmax
// in f32, the probabilities kept in f32, then dropout into the dtype the PV GEMM reads.
template <typename T>
__global__ void attention_softmax_kernel(const float* scores, const float* bias,
                                         const int32_t* key_mask, bool causal, float* probs,
                                         T* dropped, int64_t heads, int64_t tq, int64_t tk,
                                         RandomStream stream, float rate) {
  const int64_t row = blockIdx.x;  // (b * heads + h) * tq + i
  const int64_t i = row % tq, h = (row / tq) % heads, b = row / (tq * heads);
  const float masked = -3.4028234663852886e38f;
  const float* s = scores + row * tk;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < tk; j += blockDim.x) {
    float v = s[j];
    if (bias) v += bias[(h * tq + i) * tk + j];
    if ((key_mask && key_mask[b * tk + j] == 0) || (causal && j > i)) v += masked;
    probs[row * tk + j] = v;
    m = fmaxf(m, v);
  }
  m = block_max(m);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < tk; j += blockDim.x) {
    const float e = expf(probs[row * tk + j] - m);
    probs[row * tk + j] = e;
    sum += e;
  }
  const float inv = 1.0f / block_sum(sum);
  const float keep_scale = 1.0f / (1.0f - rate);
  for (int64_t j = threadIdx.x; j < tk; j += blockDim.x) {
    const float p = probs[row * tk + j] * inv;
    probs[row * tk + j] = p;
    const bool keep = rate <= 0.0f || stream.uniform(static_cast<uint64_t>(row * tk + j)) >= rate;
    store(dropped, row * tk + j, keep ? (rate > 0.0f ? p * keep_scale : p) : 0.0f);
  }
}

// The backward's score rows: dP (f32, from dO V^T) times the dropout mask gives the
// gradient of the softmax input, dS = P * (dP - sum_j dP_j P_j), kept in f32 (for the bias
// gradient) and in the dtype the dQ and dK GEMMs read.
template <typename T>
__global__ void attention_score_grad_kernel(const float* probs, const float* d_probs,
                                            float* d_scores, T* d_scores_gemm, int64_t tk,
                                            RandomStream stream, float rate) {
  const int64_t row = blockIdx.x;
  const float keep_scale = rate > 0.0f ? 1.0f / (1.0f - rate) : 1.0f;
  auto masked_grad = [&](int64_t j) {
    const int64_t e = row * tk + j;
    const bool keep = rate <= 0.0f || stream.uniform(static_cast<uint64_t>(e)) >= rate;
    return keep ? d_probs[e] * keep_scale : 0.0f;
  };
  float dot = 0.0f;
  for (int64_t j = threadIdx.x; j < tk; j += blockDim.x)
    dot += masked_grad(j) * probs[row * tk + j];
  dot = block_sum(dot);
  for (int64_t j = threadIdx.x; j < tk; j += blockDim.x) {
    const int64_t e = row * tk + j;
    const float ds = probs[e] * (masked_grad(j) - dot);
    d_scores[e] = ds;
    store(d_scores_gemm, e, ds);
  }
}

// The forward's PV weights rebuilt: the probabilities after dropout, in the GEMM dtype.
template <typename T>
__global__ void attention_dropped_probs_kernel(const float* probs, T* out, int64_t n,
                                               RandomStream stream, float rate) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n) return;
  const bool keep = rate <= 0.0f || stream.uniform(static_cast<uint64_t>(e)) >= rate;
  const float keep_scale = rate > 0.0f ? 1.0f / (1.0f - rate) : 1.0f;  // as the forward
  store(out, e, keep ? probs[e] * keep_scale : 0.0f);
}

// dbias[h, i, j] = sum over the batch of dS[b, h, i, j], in batch order.
__global__ void attention_bias_grad_kernel(const float* d_scores, float* d_bias, int64_t batch,
                                           int64_t per_batch) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= per_batch) return;
  float sum = 0.0f;
  for (int64_t b = 0; b < batch; ++b) sum += d_scores[b * per_batch + e];
  d_bias[e] = sum;
}

cudaDataType_t cuda_type(DType t) { return t == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

// One operand of a per-head GEMM: batch b's [T, H*dk] slice of a q/k/v-like tensor (one
// head every dk columns) or of a [B, H, Tq, Tk] score tensor (one head every Tq*Tk).
struct HeadOperand {
  const void* data;
  cudaDataType_t type;
  int64_t ld, head_stride;
};

// For each head h of one batch row: C_h = op(A_h) op(B_h) in cuBLAS's column-major terms
// (a row-major [r, c] matrix is a column-major [c, r] one), f32 accumulation, without
// TF32 for f32 storage unless set_allow_tf32 (the parity mode).
void gemm_per_head(DeviceContext& ctx, DType dt, cublasOperation_t op_a, cublasOperation_t op_b,
                   int64_t m, int64_t n, int64_t k, HeadOperand a, HeadOperand b, void* c,
                   cudaDataType_t c_type, int64_t ldc, int64_t c_head_stride, int64_t heads) {
  const float one = 1.0f, zero = 0.0f;
  const cublasComputeType_t compute = dt == DType::f32 ? f32_compute_type() : CUBLAS_COMPUTE_32F;
  SW_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      ctx.cublas, op_a, op_b, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), &one,
      a.data, a.type, static_cast<int>(a.ld), a.head_stride, b.data, b.type, static_cast<int>(b.ld),
      b.head_stride, &zero, c, c_type, static_cast<int>(ldc), c_head_stride,
      static_cast<int>(heads), compute, CUBLAS_GEMM_DEFAULT));
}

// Batch b's slice of a [B, T, H*dk] tensor and of a [B, H, Tq, Tk] one.
const void* at_batch(const Tensor& t, int64_t b) {
  return static_cast<const char*>(t.raw()) + b * (t.numel() / t.dim(0)) * dtype_size(t.dtype());
}
void* at_batch(Tensor& t, int64_t b) {
  return static_cast<char*>(t.raw()) + b * (t.numel() / t.dim(0)) * dtype_size(t.dtype());
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 const ops::AttentionInputs& in, Tensor* probs_out) {
  const int64_t B = q.dim(0), Tq = q.dim(1), inner = q.dim(2), Tk = k.dim(1), dk = inner / heads;
  const DType dt = q.dtype();
  SW_CHECK(dt == DType::f32 || dt == DType::bf16, Status::kUnsupported, "attention: dtype ",
           dtype_name(dt), " is not supported on cuda (f32, bf16)");
  SW_CHECK(!in.dropout.window, Status::kUnsupported,
           "attention: model-parallel dropout windows run on the cpu");
  DeviceContext& ctx = device_context(q);
  Tensor out = Tensor::empty({B, Tq, inner}, dt, q.device());
  Tensor scores = Tensor::empty({B, heads, Tq, Tk}, DType::f32, q.device());
  Tensor probs = Tensor::empty({B, heads, Tq, Tk}, DType::f32, q.device());
  Tensor weights = Tensor::empty({B, heads, Tq, Tk}, dt, q.device());  // after dropout
  if (probs_out) *probs_out = probs;
  if (B * Tq * Tk == 0) return Tensor::zeros({B, Tq, inner}, dt, q.device());
  const cudaDataType_t type = cuda_type(dt);
  for (int64_t b = 0; b < B; ++b)  // scores[b, h] = Q_bh K_bh^T, f32
    gemm_per_head(ctx, dt, CUBLAS_OP_T, CUBLAS_OP_N, Tk, Tq, dk, {at_batch(k, b), type, inner, dk},
                  {at_batch(q, b), type, inner, dk}, at_batch(scores, b), CUDA_R_32F, Tk, Tq * Tk,
                  heads);
  const int32_t* key_mask = in.key_mask ? static_cast<const int32_t*>(in.key_mask->raw()) : nullptr;
  const float* bias = in.bias ? static_cast<const float*>(in.bias->raw()) : nullptr;
  SW_CHECK(!in.bias || in.bias->dtype() == DType::f32, Status::kInvalidArgument,
           "attention: the position bias must be f32 on cuda");
  const float rate = in.dropout.active() ? static_cast<float>(in.dropout.rate) : 0.0f;
  dispatch_storage(dt, "attention", [&](auto zero_value) {
    using T = decltype(zero_value);
    attention_softmax_kernel<<<static_cast<unsigned>(B * heads * Tq), 128, 0, ctx.stream>>>(
        static_cast<const float*>(scores.raw()), bias, key_mask, in.causal,
        static_cast<float*>(probs.raw()), static_cast<T*>(weights.raw()), heads, Tq, Tk,
        in.dropout.stream, rate);
  });
  SW_CUDA_CHECK_LAUNCH("attention_softmax");
  for (int64_t b = 0; b < B; ++b)  // out[b, :, h] = P_bh V_bh
    gemm_per_head(ctx, dt, CUBLAS_OP_N, CUBLAS_OP_N, dk, Tq, Tk, {at_batch(v, b), type, inner, dk},
                  {at_batch(weights, b), type, Tk, Tq * Tk}, at_batch(out, b), type, inner, dk,
                  heads);
  return out;
}

ops::AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                       const Tensor& v, const Tensor& probs, int64_t heads,
                                       const ops::AttentionInputs& in) {
  const int64_t B = q.dim(0), Tq = q.dim(1), inner = q.dim(2), Tk = k.dim(1), dk = inner / heads;
  const DType dt = q.dtype();
  check_dtype(dout, dt, "attention backward: dout");
  check_dtype(probs, DType::f32, "attention backward: probs (the forward keeps them in f32)");
  SW_CHECK(!in.dropout.window, Status::kUnsupported,
           "attention backward: model-parallel dropout windows run on the cpu");
  DeviceContext& ctx = device_context(q);
  const Device device = q.device();
  ops::AttentionGrads g;
  g.dq = Tensor::zeros(q.shape(), dt, device);
  g.dk = Tensor::zeros(k.shape(), dt, device);
  g.dv = Tensor::zeros(v.shape(), dt, device);
  if (in.bias) g.dbias = Tensor::zeros({heads, Tq, Tk}, DType::f32, device);
  if (B * Tq * Tk * dk == 0) return g;
  const cudaDataType_t type = cuda_type(dt);
  const int64_t scores_per_batch = heads * Tq * Tk, score_count = B * scores_per_batch;
  const float rate = in.dropout.active() ? static_cast<float>(in.dropout.rate) : 0.0f;
  Tensor weights = Tensor::empty(probs.shape(), dt, device);  // the forward's PV weights
  Tensor d_probs = Tensor::empty(probs.shape(), DType::f32, device);
  Tensor d_scores = Tensor::empty(probs.shape(), DType::f32, device);
  Tensor d_scores_gemm = dt == DType::f32 ? d_scores : Tensor::empty(probs.shape(), dt, device);
  dispatch_storage(dt, "attention backward", [&](auto zero_value) {
    using T = decltype(zero_value);
    attention_dropped_probs_kernel<<<blocks_for(score_count), kThreads, 0, ctx.stream>>>(
        static_cast<const float*>(probs.raw()), static_cast<T*>(weights.raw()), score_count,
        in.dropout.stream, rate);
  });
  SW_CUDA_CHECK_LAUNCH("attention_dropped_probs");
  for (int64_t b = 0; b < B; ++b) {
    // dV_bh = W_bh^T dO_bh and dP_bh = dO_bh V_bh^T (f32).
    gemm_per_head(ctx, dt, CUBLAS_OP_N, CUBLAS_OP_T, dk, Tk, Tq,
                  {at_batch(dout, b), type, inner, dk}, {at_batch(weights, b), type, Tk, Tq * Tk},
                  at_batch(g.dv, b), type, inner, dk, heads);
    gemm_per_head(ctx, dt, CUBLAS_OP_T, CUBLAS_OP_N, Tk, Tq, dk, {at_batch(v, b), type, inner, dk},
                  {at_batch(dout, b), type, inner, dk}, at_batch(d_probs, b), CUDA_R_32F, Tk,
                  Tq * Tk, heads);
  }
  dispatch_storage(dt, "attention backward", [&](auto zero_value) {
    using T = decltype(zero_value);
    attention_score_grad_kernel<<<static_cast<unsigned>(B * heads * Tq), 128, 0, ctx.stream>>>(
        static_cast<const float*>(probs.raw()), static_cast<const float*>(d_probs.raw()),
        static_cast<float*>(d_scores.raw()), static_cast<T*>(d_scores_gemm.raw()), Tk,
        in.dropout.stream, rate);
  });
  SW_CUDA_CHECK_LAUNCH("attention_score_grad");
  for (int64_t b = 0; b < B; ++b) {
    // dQ_bh = dS_bh K_bh and dK_bh = dS_bh^T Q_bh.
    const HeadOperand ds{at_batch(d_scores_gemm, b), type, Tk, Tq * Tk};
    gemm_per_head(ctx, dt, CUBLAS_OP_N, CUBLAS_OP_N, dk, Tq, Tk, {at_batch(k, b), type, inner, dk},
                  ds, at_batch(g.dq, b), type, inner, dk, heads);
    gemm_per_head(ctx, dt, CUBLAS_OP_N, CUBLAS_OP_T, dk, Tk, Tq, {at_batch(q, b), type, inner, dk},
                  ds, at_batch(g.dk, b), type, inner, dk, heads);
  }
  if (in.bias) {
    attention_bias_grad_kernel<<<blocks_for(scores_per_batch), kThreads, 0, ctx.stream>>>(
        static_cast<const float*>(d_scores.raw()), static_cast<float*>(g.dbias.raw()), B,
        scores_per_batch);
    SW_CUDA_CHECK_LAUNCH("attention_bias_grad");
  }
  return g;
}

}  // namespace sw::kernels
