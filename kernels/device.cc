#include "kernels/device.cuh"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels/device_context.h"

namespace sw::kernels {

void throw_cuda_error(cudaError_t code, const char* call, const char* file, int line) {
  const Status status = code == cudaErrorMemoryAllocation ? Status::kOutOfMemory : Status::kDevice;
  throw Error(status,
              detail::concat(call, ": ", cudaGetErrorName(code), " (", static_cast<int>(code),
                             "): ", cudaGetErrorString(code), " at ", file, ":", line));
}

void throw_cublas_error(cublasStatus_t code, const char* call, const char* file, int line) {
  const Status status = code == CUBLAS_STATUS_ALLOC_FAILED ? Status::kOutOfMemory : Status::kDevice;
  throw Error(status,
              detail::concat(call, ": ", cublasGetStatusName(code), " (", static_cast<int>(code),
                             "): ", cublasGetStatusString(code), " at ", file, ":", line));
}

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the sticky error, report none
    return 0;
  }
  return count;
}

namespace {

void check_device_index(int index) {
  const int count = device_count();
  SW_CHECK(count > 0, Status::kDevice, "device cuda:", index,
           ": no CUDA device is visible to this process");
  SW_CHECK(index >= 0 && index < count, Status::kInvalidArgument, "device cuda:", index, ": only ",
           count, " CUDA device(s) visible (cuda:0 .. cuda:", count - 1, ")");
}

// Block sizes: 512-byte granules below 1 MiB, 2 MiB granules above, so a freed block
// serves later requests of nearby sizes.
size_t rounded_size(size_t bytes) {
  const size_t granule = bytes < (size_t{1} << 20) ? 512 : (size_t{2} << 20);
  return (bytes + granule - 1) / granule * granule;
}

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(int index) : index_(index) {}

  void* allocate(size_t bytes) override {
    if (bytes == 0) return nullptr;
    const size_t size = rounded_size(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        tally_.allocated(bytes);
        return p;
      }
    }
    device_context(index_);  // makes the device current
    void* p = nullptr;
    cudaError_t status = cudaMalloc(&p, size);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      release_cached();  // give the cache back and try once more
      status = cudaMalloc(&p, size);
    }
    SW_CUDA_CHECK(status);
    tally_.allocated(bytes);
    return p;
  }

  void deallocate(void* ptr, size_t bytes) override {
    if (!ptr) return;
    tally_.freed(bytes);
    // Work on the device's single stream is ordered, so the block is reusable at once.
    std::lock_guard<std::mutex> lock(mutex_);
    free_[rounded_size(bytes)].push_back(ptr);
  }

  void release_cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    SW_CUDA_CHECK(cudaSetDevice(index_));
    SW_CUDA_CHECK(cudaDeviceSynchronize());
    for (auto& [size, blocks] : free_)
      for (void* p : blocks) SW_CUDA_CHECK(cudaFree(p));
    free_.clear();
  }

 private:
  int index_;
  std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;
};

std::mutex registry_mutex;
std::map<int, std::unique_ptr<DeviceContext>>& contexts() {
  static auto* m = new std::map<int, std::unique_ptr<DeviceContext>>();  // never destroyed:
  return *m;  // CUDA may already be shut down when static destructors run
}
std::map<int, std::unique_ptr<CachingAllocator>>& allocators() {
  static auto* m = new std::map<int, std::unique_ptr<CachingAllocator>>();
  return *m;
}

}  // namespace

DeviceContext& device_context(int index) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  auto& slot = contexts()[index];
  if (!slot) {
    check_device_index(index);
    auto ctx = std::make_unique<DeviceContext>();
    ctx->index = index;
    SW_CUDA_CHECK(cudaSetDevice(index));
    SW_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
    SW_CUBLAS_CHECK(cublasCreate(&ctx->cublas));
    SW_CUBLAS_CHECK(cublasSetStream(ctx->cublas, ctx->stream));
    SW_CUBLAS_CHECK(cublasLtCreate(&ctx->cublas_lt));
    ctx->cublas_workspace_bytes = size_t{32} << 20;  // cuBLAS's advice for Hopper
    SW_CUDA_CHECK(cudaMalloc(&ctx->cublas_workspace, ctx->cublas_workspace_bytes));
    SW_CUBLAS_CHECK(
        cublasSetWorkspace(ctx->cublas, ctx->cublas_workspace, ctx->cublas_workspace_bytes));
    slot = std::move(ctx);
  }
  SW_CUDA_CHECK(cudaSetDevice(index));
  return *slot;
}

DeviceContext& device_context(const Tensor& t) {
  SW_CHECK(!t.device().is_cpu(), Status::kInternal, "device_context: ", t.str(), " is on the cpu");
  return device_context(t.device().index);
}

Allocator& cuda_allocator(int index) {
  check_device_index(index);
  std::lock_guard<std::mutex> lock(registry_mutex);
  auto& slot = allocators()[index];
  if (!slot) slot = std::make_unique<CachingAllocator>(index);
  return *slot;
}

void empty_cache(int index) {
  static_cast<CachingAllocator&>(cuda_allocator(index)).release_cached();
}

void copy_bytes(void* dst, const Device& dst_device, const void* src, const Device& src_device,
                size_t bytes) {
  if (bytes == 0) return;
  const Device& gpu = dst_device.is_cpu() ? src_device : dst_device;
  DeviceContext& ctx = device_context(gpu.index);
  SW_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, ctx.stream));
  SW_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

void memset_zero(void* ptr, size_t bytes, int index) {
  if (bytes == 0) return;
  SW_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, device_context(index).stream));
}

void synchronize(int index) { SW_CUDA_CHECK(cudaStreamSynchronize(device_context(index).stream)); }

}  // namespace sw::kernels
