// Helpers shared by the CPU-vs-GPU parity tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "../cpp/test_util.h"

namespace sw::parity {

inline const Device kGpu = Device::cuda(0);

// A test data folder: the environment variable `env` when set (scripts/gpu-check sets it
// from its checkout: paths compiled into a binary built elsewhere do not exist on the GPU
// machine), else the path compiled in.
inline std::string data_dir(const char* env, const char* compiled) {
  const char* value = std::getenv(env);
  return value ? value : compiled;
}

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
