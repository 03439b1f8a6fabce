// Device-side random numbers from the shared Philox header (core/tensor/philox.h): the
// same element i of the same stream as on the host, bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/tensor/philox.h"

namespace sw::kernels {

// out[i] = stream.uniform(i) for i < n, out a device pointer. Returns the launch status.
cudaError_t philox_uniform(const RandomStream& stream, float* out, int64_t n,
                           cudaStream_t cuda_stream);

// out[i] = stream.bits(i): the raw 32-bit words, for known-answer checks on the device.
cudaError_t philox_bits(const RandomStream& stream, uint32_t* out, int64_t n,
                        cudaStream_t cuda_stream);

}  // namespace sw::kernels
