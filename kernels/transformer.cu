#include <limits>

#include "kernels/cuda_types.cuh"
#include "kernels/device_context.h"
#include "kernels/transformer.cuh"

namespace sw::kernels {
namespace {

// Block-wide sum of one float per thread (blockDim.x a multiple of 32, at most 1024).
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // partial may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? partial[lane] : 0.0f;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ float block_max(float v) {
  __shared__ float partial[32];
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int warps = blockDim.x / 32;
  v = lane < warps ? partial[lane] : -INFINITY;
  for (int offset = 16; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

template <typename T>
__global__ void embedding_kernel(const T* table, const int32_t* ids, T* out, int64_t d) {
  const int64_t t = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[t]) * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) out[t * d + i] = src[i];
}

template <typename T>
__global__ void rms_norm_kernel(const T* x, const T* w, T* y, float* inv_rms, int64_t d,
                                float eps) {
  const int64_t r = blockIdx.x;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float v = load(x, r * d + i);
    sum_sq += v * v;
  }
  const float scale = rsqrtf(block_sum(sum_sq) / static_cast<float>(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    store(y, r * d + i, load(w, i) * (load(x, r * d + i) * scale));
  if (inv_rms && threadIdx.x == 0) inv_rms[r] = scale;
}

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

template <typename T>
__global__ void cross_entropy_kernel(const T* logits, const int32_t* labels, float* loss,
                                     int64_t vocab, int32_t ignore_index) {
  const int64_t r = blockIdx.x;
  const int32_t label = labels[r];
  if (label == ignore_index) {
    if (threadIdx.x == 0) loss[r] = 0.0f;
    return;
  }
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
    m = fmaxf(m, load(logits, r * vocab + j));
  m = block_max(m);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x)
    sum += expf(load(logits, r * vocab + j) - m);
  sum = block_sum(sum);
  if (threadIdx.x == 0) loss[r] = m + logf(sum) - load(logits, r * vocab + label);
}

template <typename T>
__global__ void dropout_kernel(T* x, int64_t n, RandomStream stream, float rate, float scale) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) store(x, i, stream.uniform(i) >= rate ? load(x, i) * scale : 0.0f);
}

// Row-major per-(b) strided-batched GEMM over heads for [B, T, H*dk] tensors.
cudaDataType_t cuda_type(DType t) { return t == DType::bf16 ? CUDA_R_16BF : CUDA_R_32F; }

}  // namespace

Tensor embedding(const Tensor& table, const Tensor& ids) {
  const int64_t d = table.dim(1), n = ids.numel();
  Shape shape = ids.shape();
  shape.push_back(d);
  Tensor out = Tensor::empty(shape, table.dtype(), table.device());
  if (n == 0) return out;
  DeviceContext& ctx = device_context(table);
  dispatch_storage(table.dtype(), "embedding", [&](auto zero) {
    using T = decltype(zero);
    embedding_kernel<<<static_cast<unsigned>(n), 128, 0, ctx.stream>>>(
        static_cast<const T*>(table.raw()), static_cast<const int32_t*>(ids.raw()),
        static_cast<T*>(out.raw()), d);
  });
  SW_CUDA_CHECK_LAUNCH("embedding");
  return out;
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps, Tensor* inv_rms) {
  const int64_t d = x.dim(-1), rows = d ? x.numel() / d : 0;
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (inv_rms) *inv_rms = Tensor::empty({rows}, DType::f32, x.device());
  if (rows == 0) return y;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "rms_norm", [&](auto zero) {
    using T = decltype(zero);
    rms_norm_kernel<<<static_cast<unsigned>(rows), 256, 0, ctx.stream>>>(
        static_cast<const T*>(x.raw()), static_cast<const T*>(weight.raw()),
        static_cast<T*>(y.raw()), inv_rms ? static_cast<float*>(inv_rms->raw()) : nullptr, d,
        static_cast<float>(eps));
  });
  SW_CUDA_CHECK_LAUNCH("rms_norm");
  return y;
}

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

Tensor cross_entropy_rows(const Tensor& logits, const Tensor& labels, int32_t ignore_index) {
  const int64_t n = logits.dim(0), vocab = logits.dim(1);
  Tensor loss = Tensor::empty({n}, DType::f32, logits.device());
  if (n == 0) return loss;
  DeviceContext& ctx = device_context(logits);
  dispatch_storage(logits.dtype(), "cross_entropy", [&](auto zero) {
    using T = decltype(zero);
    cross_entropy_kernel<<<static_cast<unsigned>(n), 256, 0, ctx.stream>>>(
        static_cast<const T*>(logits.raw()), static_cast<const int32_t*>(labels.raw()),
        static_cast<float*>(loss.raw()), vocab, ignore_index);
  });
  SW_CUDA_CHECK_LAUNCH("cross_entropy");
  return loss;
}

void dropout(Tensor& x, const ops::DropoutSpec& spec) {
  const int64_t n = x.numel();
  if (n == 0) return;
  DeviceContext& ctx = device_context(x);
  dispatch_storage(x.dtype(), "dropout", [&](auto zero) {
    using T = decltype(zero);
    dropout_kernel<<<blocks_for(n), kThreads, 0, ctx.stream>>>(
        static_cast<T*>(x.raw()), n, spec.stream, static_cast<float>(spec.rate),
        static_cast<float>(1.0 / (1.0 - spec.rate)));
  });
  SW_CUDA_CHECK_LAUNCH("dropout");
}

}  // namespace sw::kernels
