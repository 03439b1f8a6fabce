// The CUDA device layer as the core sees it: plain C++ declarations (no CUDA types), so
// core/ can call it from ordinary .cc files. Built only with SW_ENABLE_CUDA.
#pragma once

#include <cstddef>

#include "core/tensor/allocator.h"

namespace sw::kernels {

// CUDA devices visible to this process (0 when there is no driver or no device).
int device_count();

// The caching allocator of device `index`: freed blocks are kept for reuse on that
// device's stream; a device that does not exist is an error naming it.
Allocator& cuda_allocator(int index);
// Returns every cached, unused block of device `index` to the driver.
void empty_cache(int index);

// Copies between host and device memory (either direction, or device to device),
// ordered on the device's stream and complete when this returns.
void copy_bytes(void* dst, const Device& dst_device, const void* src, const Device& src_device,
                size_t bytes);

// Sets `bytes` bytes of device memory to zero (on the device's stream).
void memset_zero(void* ptr, size_t bytes, int index);

// Waits for all work queued on device `index`.
void synchronize(int index);

}  // namespace sw::kernels
