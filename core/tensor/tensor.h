// Tensor: a contiguous, row-major view into shared storage, with a dtype and a device.
// Copying a Tensor shares its storage (like torch.Tensor); clone() copies the data.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/allocator.h"
#include "core/tensor/dtype.h"
#include "core/tensor/error.h"

namespace sw {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);
// Element count; an overflow is an invalid-argument error.
int64_t shape_numel(const Shape& shape);
// Bytes of a tensor of this shape and dtype; too large to allocate is an out-of-memory error.
size_t shape_bytes(const Shape& shape, DType dtype);

class Storage {
 public:
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  const Device& device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
};

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu());
  static Tensor full(const Shape& shape, DType dtype, double value);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
    SW_CHECK_ARG(static_cast<int64_t>(values.size()) == shape_numel(shape),
                 "from_vector: ", values.size(), " values do not fill shape ", shape_str(shape));
    Tensor t = empty(shape, dtype_of<T>());
    std::copy(values.begin(), values.end(), t.data<T>());
    return t;
  }

  // False for a default-constructed Tensor; any data access to one is an error.
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  // Size of dimension i; negative i counts from the end.
  int64_t dim(int i) const;
  int64_t numel() const { return shape_numel(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }

  template <typename T>
  T* data() {
    check_access(dtype_of<T>());
    return static_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    check_access(dtype_of<T>());
    return static_cast<const T*>(raw());
  }
  void* raw() const;

  // Same data, new shape (same number of elements).
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) of dimension 0, sharing storage.
  Tensor slice(int64_t begin, int64_t end) const;
  // A copy in another dtype (f32/f64/bf16 between each other, i32/i64 between each other).
  Tensor to(DType dtype) const;
  // A copy on another device ("cpu" <-> "cuda:N"); complete when it returns.
  Tensor to(const Device& device) const;
  Tensor clone() const;
  void fill(double value);
  // Copies other's elements into this tensor (across devices too); shapes and dtypes must match.
  void copy_from(const Tensor& other);

  // Element i as a double, for tests and small reads.
  double item(int64_t i = 0) const;
  std::string str() const;  // "f32[2, 3] on cpu"
  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }

 private:
  void check_access(DType requested) const;
  void require_defined(const char* op) const;

  std::shared_ptr<Storage> storage_;
  size_t offset_bytes_ = 0;
  Shape shape_;
  DType dtype_ = DType::f32;
};

// Throws naming `what` when t's shape differs from `expected` (-1 matches any size).
void check_shape(const Tensor& t, const Shape& expected, const char* what);
void check_dtype(const Tensor& t, DType expected, const char* what);

}  // namespace sw
