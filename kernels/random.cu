#include "kernels/random.cuh"

namespace sw::kernels {
namespace {

// One thread per Philox block of four outputs.
template <typename T, typename Draw>
__global__ void fill_from_stream(RandomStream stream, T* out, int64_t n, Draw draw) {
  const int64_t block = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t first = block * 4;
  if (first >= n) return;
  const Philox4x32 r = stream.block(static_cast<uint32_t>(block));
  for (int j = 0; j < 4 && first + j < n; ++j) out[first + j] = draw(r.v[j]);
}

template <typename T, typename Draw>
cudaError_t launch(const RandomStream& stream, T* out, int64_t n, cudaStream_t cuda_stream,
                   Draw draw) {
  if (n <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  const int64_t blocks = (n + 4 * kThreads - 1) / (4 * kThreads);
  fill_from_stream<<<static_cast<unsigned>(blocks), kThreads, 0, cuda_stream>>>(stream, out, n,
                                                                                draw);
  return cudaGetLastError();
}

struct UniformDraw {
  __device__ float operator()(uint32_t bits) const { return uniform_from_bits(bits); }
};
struct BitsDraw {
  __device__ uint32_t operator()(uint32_t bits) const { return bits; }
};

}  // namespace

cudaError_t philox_uniform(const RandomStream& stream, float* out, int64_t n,
                           cudaStream_t cuda_stream) {
  return launch(stream, out, n, cuda_stream, UniformDraw{});
}

cudaError_t philox_bits(const RandomStream& stream, uint32_t* out, int64_t n,
                        cudaStream_t cuda_stream) {
  return launch(stream, out, n, cuda_stream, BitsDraw{});
}

}  // namespace sw::kernels
