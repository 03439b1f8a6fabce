#include "core/ops/attention.h"

#include "core/ops/checks.h"
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
  const int64_t B = q.dim(0), Tq = q.dim(1), inner = q.dim(2), Tk = k.dim(1);
  SW_CHECK_ARG(heads > 0 && inner % heads == 0, "attention: ", inner,
               " features do not split into ", heads, " heads");
  check_shape(k, {B, Tk, inner}, "attention: k");
  check_shape(v, {B, Tk, inner}, "attention: v");
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

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int64_t heads,
                 const AttentionInputs& in, Tensor* probs) {
  check_attention(q, k, v, heads, in);
  if (on_cuda(q)) SW_RUN_ON_CUDA(kernels::attention(q, k, v, heads, in, probs));
  return cpu::attention(q, k, v, heads, in, probs);
}

AttentionGrads attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                  const Tensor& v, const Tensor& probs, int64_t heads,
                                  const AttentionInputs& in) {
  check_attention(q, k, v, heads, in);
  check_shape(dout, q.shape(), "attention backward: dout");
  check_shape(probs, {q.dim(0), heads, q.dim(1), k.dim(1)}, "attention backward: probs");
  check_same_device({&q, &dout, &probs}, "attention backward");
  if (on_cuda(q)) SW_RUN_ON_CUDA(kernels::attention_backward(dout, q, k, v, probs, heads, in));
  return cpu::attention_backward(dout, q, k, v, probs, heads, in);
}

}  // namespace sw::ops
