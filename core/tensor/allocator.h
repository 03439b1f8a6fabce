// Allocators own raw device memory; a Tensor's Storage returns its bytes to the one
// that gave them. The CUDA caching allocator plugs in here.
#pragma once

#include <cstddef>

#include "core/tensor/dtype.h"

namespace sw {

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
};

// 64-byte aligned host memory (Eigen's vector loads and cache lines).
Allocator& cpu_allocator();

// The allocator for a device; a CUDA device in a build without CUDA ("built without
// CUDA"), or a CUDA device that is not there, is a clear sw::Error.
Allocator& allocator_for(const Device& device);

// Byte copies and zero fills on any device (host <-> device copies synchronise).
void copy_bytes(void* dst, const Device& dst_device, const void* src, const Device& src_device,
                size_t bytes);
void fill_zero(void* dst, const Device& device, size_t bytes);

}  // namespace sw
