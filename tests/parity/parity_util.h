// Helpers shared by the CPU-vs-GPU parity tests.
#pragma once

#include <gtest/gtest.h>

#include "../cpp/test_util.h"

namespace sw::parity {

inline const Device kGpu = Device::cuda(0);

// Every parity test skips on a machine without a CUDA device (or a build without CUDA).
class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// A cpu tensor's copy on the GPU in `dtype`; a GPU tensor's copy on the host in f32.
inline Tensor gpu(const Tensor& cpu, DType dtype = DType::f32) { return cpu.to(dtype).to(kGpu); }
inline Tensor host(const Tensor& device) {
  const Tensor h = device.to(Device::cpu());
  return h.dtype() == DType::bf16 ? h.to(DType::f32) : h;
}

}  // namespace sw::parity
