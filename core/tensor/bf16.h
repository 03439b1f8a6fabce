// bfloat16 storage type and f32 <-> bf16 conversion (round to nearest even), usable
// from host and device code. Arithmetic happens in f32.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/tensor/host_device.h"

namespace sw {

struct bf16 {
  uint16_t bits;
};

SW_HOST_DEVICE inline uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

SW_HOST_DEVICE inline float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

SW_HOST_DEVICE inline bf16 to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return bf16{static_cast<uint16_t>((u >> 16) | 0x40u)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                          // round to nearest, ties to even
  return bf16{static_cast<uint16_t>(u >> 16)};
}

SW_HOST_DEVICE inline float to_float(bf16 h) {
  return bits_float(static_cast<uint32_t>(h.bits) << 16);
}

}  // namespace sw
