// Allocators own raw device memory; a Tensor's Storage returns its bytes to the one
// that gave them. The CUDA caching allocator plugs in here.
#pragma once

#include <atomic>
#include <cstddef>

#include "core/tensor/dtype.h"

namespace sw {

// Bytes of tensors alive (as asked for, cached blocks not counted) and the most alive at
// once since the last reset, which restarts the peak from the bytes alive now.
class MemoryTally {
 public:
  void allocated(size_t bytes) {
    const size_t live = live_ += bytes;
    for (size_t peak = peak_; live > peak && !peak_.compare_exchange_weak(peak, live);) {
    }
  }
  void freed(size_t bytes) { live_ -= bytes; }
  size_t live() const { return live_; }
  size_t peak() const { return peak_; }
  size_t reset_peak() { return peak_.exchange(live_); }  // returns the previous peak

 private:
  std::atomic<size_t> live_{0}, peak_{0};
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
  // What it has handed out and not taken back (every implementation counts).
  MemoryTally& tally() { return tally_; }

 protected:
  MemoryTally tally_;
};

// 64-byte aligned host memory (Eigen's vector loads and cache lines). Freed blocks of
// 1 MiB and more are cached for reuse, up to a limit (1 GiB by default): repeated forward
// passes then skip the page faults of fresh memory, at the cost of that much resident
// memory. set_cpu_cache_limit returns the previous limit; 0 turns caching off.
Allocator& cpu_allocator();
size_t set_cpu_cache_limit(size_t bytes);
size_t cpu_cached_bytes();
// Bytes of host tensors alive now (as asked for, cached blocks not counted) and the most
// alive at once since the process began or the last reset; a reset starts the peak again
// from the bytes alive now and returns the previous peak. What `switch train` reports as a
// rank's memory and `switch plan` estimates.
size_t cpu_live_bytes();
size_t cpu_peak_bytes();
size_t reset_cpu_peak_bytes();
// The same for any device's tensors (a GPU's through its caching allocator).
size_t live_bytes(const Device& device);
size_t reset_peak_bytes(const Device& device);

// The allocator for a device; a CUDA device in a build without CUDA ("built without
// CUDA"), or a CUDA device that is not there, is a clear sw::Error.
Allocator& allocator_for(const Device& device);

// Byte copies and zero fills on any device (host <-> device copies synchronise).
void copy_bytes(void* dst, const Device& dst_device, const void* src, const Device& src_device,
                size_t bytes);
void fill_zero(void* dst, const Device& device, size_t bytes);
// Waits until the library's queued work on the device is done (a no-op on the cpu), e.g.
// before another library reads its memory.
void synchronize(const Device& device);

}  // namespace sw
