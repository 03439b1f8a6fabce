// Device-side helpers shared by the .cu files: loading and storing f32/bf16/f64 storage
// as f32 (or f64) arithmetic, and launch geometry.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "core/tensor/dtype.h"
#include "core/tensor/error.h"

namespace sw::kernels {

__device__ inline float load(const float* p, int64_t i) { return p[i]; }
__device__ inline float load(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ inline double load(const double* p, int64_t i) { return p[i]; }
__device__ inline void store(float* p, int64_t i, float v) { p[i] = v; }
__device__ inline void store(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16(v); }
__device__ inline void store(double* p, int64_t i, double v) { p[i] = v; }

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n, int per_thread = 1) {
  const int64_t per_block = static_cast<int64_t>(kThreads) * per_thread;
  return static_cast<unsigned>((n + per_block - 1) / per_block);
}

// Calls fn(T{}) with the device storage type of a float dtype (f32 or bf16).
template <typename Fn>
void dispatch_storage(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::f32:
      fn(float{});
      break;
    case DType::bf16:
      fn(__nv_bfloat16{});
      break;
    default:
      throw Error(Status::kUnsupported, std::string(op) + ": dtype " + dtype_name(t) +
                                            " is not supported on cuda (f32, bf16)");
  }
}

}  // namespace sw::kernels
