#include "core/ops/attention.h"

#include "core/ops/checks.h"
#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/attention.cuh"

namespace sw::ops {
namespace {

// q [B, Tq, H*dk], k and v [B, Tk, H*dk], the bias, mask and dropout of one attention call.
void check_attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                     const AttentionInputs& in) {
  SW_CHECK_ARG(q.ndim() == 3 && k.ndim() == 3 && v.ndim() == 3,
               "attention: q, k, v must be [B, T, H*dk], got ", q.str(), ", ", k.str(), ", ",
               v.str());
  const int64_t B = q.dim(0), Tq = q.dim(1), inner = q.dim(2), capacity = k.dim(1);
  SW_CHECK_ARG(heads > 0 && inner % heads == 0, "attention: ", inner,
               " features do not split into ", heads, " heads");
  check_shape(k, {B, capacity, inner}, "attention: k");
  check_shape(v, {B, capacity, inner}, "attention: v");
  SW_CHECK_ARG(in.key_length == -1 || (in.key_length > 0 && in.key_length <= capacity),
               "attention: key_length ", in.key_length, " must be -1 or in [1, ", capacity,
               "] (the keys k holds)");
  const int64_t Tk = in.key_length == -1 ? capacity : in.key_length;
  SW_CHECK_ARG(k.dtype() == q.dtype() && v.dtype() == q.dtype(), "attention: dtypes differ");
  check_same_device({&q, &k, &v, in.bias ? in.bias : &q, in.key_mask ? in.key_mask : &q},
                    "attention");
  if (in.bias) {
    check_shape(*in.bias, {heads, Tq, Tk}, "attention: bias");
    // On a GPU the bias is f32 whatever the activations (the softmax runs in f32).
    check_dtype(*in.bias, on_cuda(q) ? DType::f32 : q.dtype(), "attention: bias");
  }
  if (in.key_mask) {
    check_shape(*in.key_mask, {B, Tk}, "attention: key mask");
    check_dtype(*in.key_mask, DType::i32, "attention: key mask");
  }
  if (in.dropout.active()) {
    SW_CHECK_ARG(in.dropout.rate < 1.0, "attention: dropout rate must be in [0, 1), got ",
                 in.dropout.rate);
    check_stream_size(B * heads * Tq * Tk, "attention dropout");
  }
}

// The first `length` positions of each sequence of a cache [B, capacity, D], contiguous.
// (For the CUDA kernels: a build without CUDA drops the call.)
[[maybe_unused]] Tensor key_prefix(const Tensor& cache, int64_t length) {
  const int64_t batch = cache.dim(0), capacity = cache.dim(1), width = cache.dim(2);
  Tensor out = Tensor::empty({batch, length, width}, cache.dtype(), cache.device());
  const Tensor rows = cache.view({batch * capacity, width});
  for (int64_t b = 0; b < batch; ++b)
    out.view({batch * length, width})
        .slice(b * length, (b + 1) * length)
        .copy_from(rows.slice(b * capacity, b * capacity + length));
  return out;
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 const AttentionInputs& in, Tensor* probs) {
  check_attention(q, k, v, heads, in);
  if (on_cuda(q)) {
    // The kernels take whole tensors: a cache's keys are copied out first.
    if (in.key_length != -1 && in.key_length < k.dim(1)) {
      [[maybe_unused]] AttentionInputs whole = in;  // unused without CUDA
      whole.key_length = -1;
      SW_RUN_ON_CUDA(kernels::attention(q, key_prefix(k, in.key_length),
                                        key_prefix(v, in.key_length), heads, whole, probs));
    }
    SW_RUN_ON_CUDA(kernels::attention(q, k, v, heads, in, probs));
  }
  // The probabilities stay f32, as the CUDA kernel keeps them for a bf16 model.
  return stored(cpu::attention(q, k, v, heads, in, probs));
}

AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& probs, int64_t heads,
                                  const AttentionInputs& in) {
  check_attention(q, k, v, heads, in);
  SW_CHECK_ARG(in.key_length == -1,
               "attention backward: key_length (a decoding cache) is for "
               "the forward only, got ",
               in.key_length);
  check_shape(dout, q.shape(), "attention backward: dout");
  check_shape(probs, {q.dim(0), heads, q.dim(1), k.dim(1)}, "attention backward: probs");
  check_same_device({&q, &dout, &probs}, "attention backward");
  if (on_cuda(q)) SW_RUN_ON_CUDA(kernels::attention_backward(dout, q, k, v, probs, heads, in));
  AttentionGrads g = cpu::attention_backward(dout, q, k, v, probs, heads, in);
  stored(g.dq);  // dbias, the position bias's gradient, stays f32 like the weights'
  stored(g.dk);
  stored(g.dv);
  return g;
}

}  // namespace sw::ops
