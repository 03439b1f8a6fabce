// The device Philox stream against the host one and the Random123 known answers.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

#include "core/tensor/philox.h"
#include "kernels/random.cuh"

namespace {

bool have_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

template <typename T>
std::vector<T> run_on_device(int64_t n,
                             cudaError_t (*fill)(const sw::RandomStream&, T*, int64_t,
                                                 cudaStream_t),
                             const sw::RandomStream& stream) {
  T* device = nullptr;
  EXPECT_EQ(cudaMalloc(&device, n * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemset(device, 0xFF, n * sizeof(T)), cudaSuccess);  // poison
  EXPECT_EQ(fill(stream, device, n, nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<T> host(n);
  EXPECT_EQ(cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(device);
  return host;
}

__global__ void known_answer_kernel(const uint32_t* in, uint32_t* out) {
  const sw::Philox4x32 r = sw::philox4x32_10({{in[0], in[1], in[2], in[3]}}, in[4], in[5]);
  for (int i = 0; i < 4; ++i) out[i] = r.v[i];
}

TEST(PhiloxParity, KnownAnswerOnDevice) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  // Random123 tests/kat_vectors: philox4x32 10, counter, key, expected.
  const uint32_t input[6] = {0x243f6a88, 0x85a308d3, 0x13198a2e,
                             0x03707344, 0xa4093822, 0x299f31d0};
  const uint32_t expected[4] = {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1};
  uint32_t *d_in = nullptr, *d_out = nullptr;
  ASSERT_EQ(cudaMalloc(&d_in, sizeof input), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_out, 4 * sizeof(uint32_t)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(d_in, input, sizeof input, cudaMemcpyHostToDevice), cudaSuccess);
  known_answer_kernel<<<1, 1>>>(d_in, d_out);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  uint32_t out[4] = {};
  ASSERT_EQ(cudaMemcpy(out, d_out, sizeof out, cudaMemcpyDeviceToHost), cudaSuccess);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], expected[i]) << "word " << i;
  cudaFree(d_in);
  cudaFree(d_out);
}

TEST(PhiloxParity, DeviceStreamEqualsHostStream) {
  if (!have_device()) GTEST_SKIP() << "no CUDA device";
  const sw::RandomStream stream(0x0123456789abcdefULL, sw::RandomPurpose::kDropout, 77, 12345);
  const int64_t n = (1 << 20) + 3;  // not a multiple of 4: the tail block is partial
  const std::vector<uint32_t> bits = run_on_device<uint32_t>(n, sw::kernels::philox_bits, stream);
  const std::vector<float> uniform = run_on_device<float>(n, sw::kernels::philox_uniform, stream);
  int64_t bit_mismatches = 0, uniform_mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    bit_mismatches += bits[i] != stream.bits(i);
    uniform_mismatches += uniform[i] != stream.uniform(i);
  }
  EXPECT_EQ(bit_mismatches, 0);
  EXPECT_EQ(uniform_mismatches, 0);
}

}  // namespace
