#include <cmath>

#include "kernels/cuda_types.cuh"
#include "kernels/device.cuh"
#include "kernels/device_context.h"
#include "kernels/reduce.cuh"
#include "kernels/router_loss.cuh"
#include "kernels/softmax.cuh"

namespace sw::kernels {
namespace {

// One block per group of `per_group` consecutive tokens. Thread e (striding by the block)
// walks the group's tokens in order for expert e: its probability sum and first-choice
// count, and its -p log p terms; the group's entropy is then the block's sum of those.
__global__ void group_sums_kernel(const float* probs, const int32_t* index, int64_t k,
                                  int64_t per_group, int64_t experts, double* counts,
                                  double* prob_sums, double* entropy) {
  const int64_t g = blockIdx.x;
  double group_entropy = 0.0;
  for (int64_t e = threadIdx.x; e < experts; e += blockDim.x) {
    double count = 0.0, sum = 0.0;
    for (int64_t t = g * per_group; t < (g + 1) * per_group; ++t) {
      const double p = probs[t * experts + e];
      sum += p;
      if (p > 0) group_entropy -= p * log(p);
      count += index[t * k] == e ? 1.0 : 0.0;
    }
    counts[g * experts + e] = count;
    prob_sums[g * experts + e] = sum;
  }
  group_entropy = block_sum_f64(group_entropy);
  if (threadIdx.x == 0) entropy[g] = group_entropy;
}

template <typename T>
std::vector<T> to_host(const Tensor& t) {
  std::vector<T> out(static_cast<size_t>(t.numel()));
  kernels::copy_bytes(out.data(), Device::cpu(), t.raw(), t.device(), t.nbytes());
  return out;
}

}  // namespace

GroupSums group_sums(const Tensor& probs, const Tensor& assigned, int64_t groups) {
  check_dtype(probs, DType::f32, "routing sums: probs (the router runs in f32)");
  check_dtype(assigned, DType::i32, "routing sums: assigned experts");
  const int64_t n = probs.dim(0), experts = probs.dim(1), k = assigned.numel() / n;
  const Device dev = probs.device();
  Tensor counts = Tensor::empty({groups, experts}, DType::f64, dev),
         sums = Tensor::empty({groups, experts}, DType::f64, dev),
         entropy = Tensor::empty({groups}, DType::f64, dev);
  DeviceContext& ctx = device_context(probs);
  group_sums_kernel<<<static_cast<unsigned>(groups), 128, 0, ctx.stream>>>(
      static_cast<const float*>(probs.raw()), static_cast<const int32_t*>(assigned.raw()), k,
      n / groups, experts, static_cast<double*>(counts.raw()), static_cast<double*>(sums.raw()),
      static_cast<double*>(entropy.raw()));
  SW_CUDA_CHECK_LAUNCH("routing group sums");
  return {to_host<double>(counts), to_host<double>(sums), to_host<double>(entropy)};
}

double sum_of_squared_logsumexp(const Tensor& logits) {
  check_dtype(logits, DType::f32, "router z-loss: logits (the router runs in f32)");
  const Tensor lse = logsumexp(logits);
  const int64_t n = lse.numel();
  if (n == 0) return 0.0;
  DeviceContext& ctx = device_context(logits);
  Tensor partial = Tensor::empty({static_cast<int64_t>(chunks_for(n))}, DType::f64, lse.device());
  Tensor total = Tensor::empty({1}, DType::f64, lse.device());
  chunk_sums_kernel<<<chunks_for(n), kThreads, 0, ctx.stream>>>(
      SquareOf<float>{static_cast<const float*>(lse.raw())}, n,
      static_cast<double*>(partial.raw()));
  SW_CUDA_CHECK_LAUNCH("logsumexp squares");
  add_in_order(static_cast<const double*>(partial.raw()), partial.numel(),
               static_cast<double*>(total.raw()), ctx.stream);
  return to_host<double>(total)[0];
}

}  // namespace sw::kernels
