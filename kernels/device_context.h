// Per-device CUDA state inside kernels/: one stream, one cuBLAS handle (and a cuBLASLt
// one) and their workspace per device, created on first use. Every CUDA and cuBLAS failure becomes
// an sw::Error naming the call and the code.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

#include "core/tensor/error.h"
#include "core/tensor/tensor.h"

namespace sw::kernels {

struct DeviceContext {
  int index = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cublasLtHandle_t cublas_lt = nullptr;  // GEMMs with epilogues; shares the workspace
  void* cublas_workspace = nullptr;
  size_t cublas_workspace_bytes = 0;
};

// The context of device `index`; makes that device current on this thread.
DeviceContext& device_context(int index);
// The context of the device a tensor lives on (an error for a cpu tensor).
DeviceContext& device_context(const Tensor& t);

// The cuBLAS compute type of f32 GEMMs: pedantic f32, or TF32 when set_allow_tf32 (gemm.cc).
cublasComputeType_t f32_compute_type();

[[noreturn]] void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t code, const char* call, const char* file,
                                     int line);

}  // namespace sw::kernels

#define SW_CUDA_CHECK(call)                                                        \
  do {                                                                             \
    const cudaError_t sw_cuda_status_ = (call);                                    \
    if (sw_cuda_status_ != cudaSuccess)                                            \
      ::sw::kernels::throw_cuda_error(sw_cuda_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define SW_CUBLAS_CHECK(call)                                                          \
  do {                                                                                 \
    const cublasStatus_t sw_cublas_status_ = (call);                                   \
    if (sw_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                    \
      ::sw::kernels::throw_cublas_error(sw_cublas_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, named by the kernel.
#define SW_CUDA_CHECK_LAUNCH(kernel_name) SW_CUDA_CHECK(cudaGetLastError())
