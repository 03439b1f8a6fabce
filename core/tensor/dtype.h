// Element types and devices a Tensor can have.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/tensor/bf16.h"

namespace sw {

// f64 exists for gradient checks on the CPU; bf16 for the GPU.
enum class DType { f32, f64, bf16, i32, i64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);
bool is_floating(DType t);
// The floating dtype a model may have, by name: "f32", "f64" or "bf16"; anything else is
// an invalid-argument error naming it.
DType model_dtype_from_name(const std::string& name);

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::f64;
}
template <>
constexpr DType dtype_of<bf16>() {
  return DType::bf16;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}

struct Device {
  enum class Kind { cpu, cuda };
  Kind kind = Kind::cpu;
  int index = 0;

  static Device cpu() { return Device{}; }
  static Device cuda(int index) { return Device{Kind::cuda, index}; }
  // "cpu", "cuda" (= cuda:0) or "cuda:N"; anything else is an invalid-argument error.
  static Device parse(const std::string& text);

  bool is_cpu() const { return kind == Kind::cpu; }
  std::string str() const;
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
};

// True when this build contains the CUDA backend.
bool cuda_built();
// CUDA devices visible to this process: 0 without CUDA, a driver or a device.
int cuda_device_count();
// An error naming the device unless it can hold tensors in this process: "built without
// CUDA", "no CUDA device is visible" or an index past the last device.
void require_device(const Device& device);

}  // namespace sw
