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

// Calls fn(T{}, G{}) with the storage types of data and of its gradient: the same, or
// bf16 data with an f32 gradient (bf16 training's master gradients).
template <typename Fn>
void dispatch_data_and_gradient(DType data, DType gradient, const char* op, Fn&& fn) {
  if (data == DType::bf16 && gradient == DType::f32) {
    fn(__nv_bfloat16{}, float{});
    return;
  }
  SW_CHECK(data == gradient, Status::kUnsupported, op, ": a ", dtype_name(gradient),
           " gradient of ", dtype_name(data), " data (the same dtype, or f32 for bf16)");
  dispatch_storage(data, op, [&](auto zero) { fn(zero, zero); });
}

}  // namespace sw::kernels
