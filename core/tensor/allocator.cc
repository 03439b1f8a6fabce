#include "core/tensor/allocator.h"

#include <cstdlib>
#include <new>

#include "core/tensor/error.h"

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
  SW_CHECK(cuda_built(), Status::kUnsupported, "device ", device.str(),
           ": libswitch was built without CUDA");
  throw Error(Status::kUnsupported,
              "device " + device.str() + ": CUDA tensors are not available in this build yet");
}

}  // namespace sw
