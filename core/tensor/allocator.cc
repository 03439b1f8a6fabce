#include "core/tensor/allocator.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "core/tensor/error.h"

#ifdef SW_WITH_CUDA
#include "kernels/device.cuh"
#endif

namespace sw {
namespace {

// Blocks of 1 MiB and more (activations, expert buffers) are kept after free and handed
// out again for the same rounded size: a forward pass allocates the same shapes every
// step, and fresh large blocks come from mmap and page-fault on first touch (about a
// tenth of the Switch FFN's time on the CPU, docs/PERF.md). Small blocks go straight to
// malloc. The cache holds at most `limit` bytes (1 GiB unless set); beyond it blocks are
// freed.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    void* p = take(bytes);
    tally_.allocated(bytes);
    return p;
  }

  void deallocate(void* ptr, size_t bytes) override {
    if (!ptr) return;
    tally_.freed(bytes);
    const size_t size = rounded(bytes);
    if (size >= kCachedFrom) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_bytes_ + size <= limit_) {
        free_[size].push_back(ptr);
        cached_bytes_ += size;
        return;
      }
    }
    std::free(ptr);
  }

 private:
  static constexpr size_t kCachedFrom = size_t{1} << 20;
  // 64-byte multiples below 1 MiB; 64 KiB multiples above, so near sizes share blocks.
  static size_t rounded(size_t bytes) {
    const size_t granule = bytes < kCachedFrom ? 64 : (size_t{64} << 10);
    return (bytes + granule - 1) / granule * granule;
  }

  void* take(size_t bytes) {
    const size_t size = rounded(bytes);
    if (size >= kCachedFrom) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_bytes_ -= size;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, size);
    SW_CHECK(p != nullptr, Status::kOutOfMemory, "cpu allocator: out of memory allocating ", bytes,
             " bytes");
    return p;
  }

  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_bytes_ = 0;
  size_t limit_ = size_t{1} << 30;

 public:
  size_t set_limit(size_t limit) {
    std::lock_guard<std::mutex> lock(mutex_);
    const size_t previous = limit_;
    limit_ = limit;
    // Shrink at once: drop blocks until the cache fits the new limit.
    for (auto it = free_.begin(); it != free_.end() && cached_bytes_ > limit_;) {
      while (!it->second.empty() && cached_bytes_ > limit_) {
        std::free(it->second.back());
        it->second.pop_back();
        cached_bytes_ -= it->first;
      }
      it = it->second.empty() ? free_.erase(it) : std::next(it);
    }
    return previous;
  }
  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_bytes_;
  }
};

// Never destroyed: tensors in other static objects may be freed after it at exit. Its
// cached blocks stay reachable from here, so a leak checker does not report them.
CpuAllocator& the_cpu_allocator() {
  static CpuAllocator* allocator = new CpuAllocator;
  return *allocator;
}

}  // namespace

Allocator& cpu_allocator() { return the_cpu_allocator(); }
size_t set_cpu_cache_limit(size_t bytes) { return the_cpu_allocator().set_limit(bytes); }
size_t cpu_cached_bytes() { return the_cpu_allocator().cached_bytes(); }
size_t cpu_live_bytes() { return the_cpu_allocator().tally().live(); }
size_t cpu_peak_bytes() { return the_cpu_allocator().tally().peak(); }
size_t reset_cpu_peak_bytes() { return the_cpu_allocator().tally().reset_peak(); }
size_t live_bytes(const Device& device) { return allocator_for(device).tally().live(); }
size_t reset_peak_bytes(const Device& device) { return allocator_for(device).tally().reset_peak(); }

Allocator& allocator_for(const Device& device) {
  if (device.is_cpu()) return cpu_allocator();
#ifdef SW_WITH_CUDA
  return kernels::cuda_allocator(device.index);
#else
  throw Error(Status::kUnsupported,
              "device " + device.str() + ": libswitch was built without CUDA");
#endif
}

bool cuda_built() {
#ifdef SW_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef SW_WITH_CUDA
  return kernels::device_count();
#else
  return 0;
#endif
}

void require_device(const Device& device) {
  if (device.is_cpu()) return;
  SW_CHECK(cuda_built(), Status::kUnsupported, "device ", device.str(),
           ": libswitch was built without CUDA");
  const int count = cuda_device_count();
  SW_CHECK(count > 0, Status::kDevice, "device ", device.str(),
           ": no CUDA device is visible to this process");
  SW_CHECK(device.index >= 0 && device.index < count, Status::kInvalidArgument, "device ",
           device.str(), ": only ", count, " CUDA device(s) visible (cuda:0 .. cuda:", count - 1,
           ")");
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

void synchronize(const Device& device) {
  if (device.is_cpu()) return;
#ifdef SW_WITH_CUDA
  kernels::synchronize(device.index);
#else
  throw Error(Status::kUnsupported, "synchronize: libswitch was built without CUDA");
#endif
}

}  // namespace sw
