#include "core/tensor/allocator.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "core/tensor/error.h"

#ifdef SW_WITH_CUDA
#include "kernels/device.cuh"
#endif

namespace sw {
namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    SW_CHECK(p != nullptr, Status::kOutOfMemory, "cpu allocator: out of memory allocating ", bytes,
             " bytes");
    return p;
  }
  void deallocate(void* ptr, size_t /*bytes*/) override { std::free(ptr); }
};

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator allocator;
  return allocator;
}

Allocator& allocator_for(const Device& device) {
  if (device.is_cpu()) return cpu_allocator();
#ifdef SW_WITH_CUDA
  return kernels::cuda_allocator(device.index);
#else
  throw Error(Status::kUnsupported,
              "device " + device.str() + ": libswitch was built without CUDA");
#endif
}

int cuda_device_count() {
#ifdef SW_WITH_CUDA
  return kernels::device_count();
#else
  return 0;
#endif
}

void copy_bytes(void* dst, const Device& dst_device, const void* src, const Device& src_device,
                size_t bytes) {
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    if (bytes) std::memmove(dst, src, bytes);
    return;
  }
#ifdef SW_WITH_CUDA
  kernels::copy_bytes(dst, dst_device, src, src_device, bytes);
#else
  throw Error(Status::kUnsupported, "copy: libswitch was built without CUDA");
#endif
}

void fill_zero(void* dst, const Device& device, size_t bytes) {
  if (device.is_cpu()) {
    if (bytes) std::memset(dst, 0, bytes);
    return;
  }
#ifdef SW_WITH_CUDA
  kernels::memset_zero(dst, bytes, device.index);
#else
  throw Error(Status::kUnsupported, "fill: libswitch was built without CUDA");
#endif
}

}  // namespace sw
