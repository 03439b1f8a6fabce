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

// Row-major per-(b) strided-batched GEMM over heads for [B, T, H*dk] tensors.
cudaDataType_t cuda_type(DType t) { return t == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 const ops::AttentionInputs& in, Tensor* probs_out) {
  const int64_t B = q.dim(0), Tq = q.dim(1), inner = q.dim(2), Tk = k.dim(1), dk = inner / heads;
  const DType dt = q.dtype();
  SW_CHECK(dt == DType::f32 || dt == DType::bf16, Status::kUnsupported, "attention: dtype ",
           dtype_name(dt), " is not supported on cuda (f32, bf16)");
  DeviceContext& ctx = device_context(q);
  Tensor out = Tensor::empty({B, Tq, inner}, dt, q.device());
  Tensor scores = Tensor::empty({B, heads, Tq, Tk}, DType::f32, q.device());
  Tensor probs = Tensor::empty({B, heads, Tq, Tk}, DType::f32, q.device());
  Tensor weights = Tensor::empty({B, heads, Tq, Tk}, dt, q.device());  // after dropout
  if (B * Tq * Tk == 0) return out;
  const size_t elem = dtype_size(dt);
  const cudaDataType_t type = cuda_type(dt);
  const cublasComputeType_t compute =
      dt == DType::f32 ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F;
  const float one = 1.0f, zero = 0.0f;
  for (int64_t b = 0; b < B; ++b) {
    // scores[b, h] (Tq x Tk, f32) = Q_bh K_bh^T; column-major: S^T = K_bh Q_bh^T.
    const char* qb = static_cast<const char*>(q.raw()) + b * Tq * inner * elem;
    const char* kb = static_cast<const char*>(k.raw()) + b * Tk * inner * elem;
    SW_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        ctx.cublas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(Tk), static_cast<int>(Tq),
        static_cast<int>(dk), &one, kb, type, static_cast<int>(inner), dk, qb, type,
        static_cast<int>(inner), dk, &zero, static_cast<float*>(scores.raw()) + b * heads * Tq * Tk,
        CUDA_R_32F, static_cast<int>(Tk), Tq * Tk, static_cast<int>(heads), compute,
        CUBLAS_GEMM_DEFAULT));
  }
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
  for (int64_t b = 0; b < B; ++b) {
    // out[b, :, h] (Tq x dk) = P_bh V_bh; column-major: O^T = V_bh^T P_bh^T.
    const char* vb = static_cast<const char*>(v.raw()) + b * Tk * inner * elem;
    const char* pb = static_cast<const char*>(weights.raw()) + b * heads * Tq * Tk * elem;
    char* ob = static_cast<char*>(out.raw()) + b * Tq * inner * elem;
    SW_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
        ctx.cublas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(dk), static_cast<int>(Tq),
        static_cast<int>(Tk), &one, vb, type, static_cast<int>(inner), dk, pb, type,
        static_cast<int>(Tk), Tq * Tk, &zero, ob, type, static_cast<int>(inner), dk,
        static_cast<int>(heads), compute, CUBLAS_GEMM_DEFAULT));
  }
  if (probs_out) *probs_out = probs;
  return out;
}

}  // namespace sw::kernels
