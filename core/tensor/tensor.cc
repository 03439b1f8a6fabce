#include "core/tensor/tensor.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <sstream>

#include "core/tensor/device_switch.h"
#include "kernels/convert.cuh"

namespace sw {

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    SW_CHECK_ARG(d >= 0, "shape ", shape_str(shape), ": negative dimension");
    SW_CHECK_ARG(!__builtin_mul_overflow(n, d, &n), "shape ", shape_str(shape),
                 ": element count overflows 64 bits");
  }
  return n;
}

size_t shape_bytes(const Shape& shape, DType dtype) {
  size_t bytes = 0;
  SW_CHECK(
      !__builtin_mul_overflow(static_cast<size_t>(shape_numel(shape)), dtype_size(dtype), &bytes) &&
          bytes <= (size_t{1} << 62),
      Status::kOutOfMemory, "shape ", shape_str(shape), " of ", dtype_name(dtype),
      " is too large to allocate");
  return bytes;
}

Storage::Storage(size_t bytes, Device device)
    : bytes_(bytes), device_(device), allocator_(&allocator_for(device)) {
  data_ = allocator_->allocate(bytes);
}

Storage::~Storage() {
  if (data_) allocator_->deallocate(data_, bytes_);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(shape_bytes(shape, dtype), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_zero(t.raw(), device, t.nbytes());
  return t;
}

Tensor Tensor::to(const Device& device) const {
  require_defined("to");
  Tensor out = empty(shape_, dtype_, device);
  copy_bytes(out.raw(), device, raw(), this->device(), nbytes());
  return out;
}

Tensor Tensor::full(const Shape& shape, DType dtype, double value) {
  Tensor t = empty(shape, dtype);
  t.fill(value);
  return t;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  const int j = i < 0 ? i + n : i;
  SW_CHECK(j >= 0 && j < n, Status::kOutOfRange, "dim ", i, " out of range for tensor ", str());
  return shape_[j];
}

void* Tensor::raw() const {
  return storage_ ? static_cast<char*>(storage_->data()) + offset_bytes_ : nullptr;
}

void Tensor::require_defined(const char* op) const {
  SW_CHECK_ARG(defined(), op, ": the tensor is undefined (default-constructed)");
}

void Tensor::check_access(DType requested) const {
  require_defined("data access");
  SW_CHECK(requested == dtype_, Status::kInvalidArgument, "tensor ", str(), " accessed as ",
           dtype_name(requested));
}

Tensor Tensor::view(const Shape& shape) const {
  SW_CHECK_ARG(shape_numel(shape) == numel(), "view: cannot view ", str(), " as ",
               shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  SW_CHECK_ARG(ndim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0], "slice [", begin,
               ", ", end, ") out of range for ", str());
  Tensor t = *this;
  const int64_t row = numel() / std::max<int64_t>(shape_[0], 1);
  t.shape_[0] = end - begin;
  t.offset_bytes_ += static_cast<size_t>(begin * row) * dtype_size(dtype_);
  return t;
}

namespace {

template <typename Src, typename Dst>
void convert(const Src* src, Dst* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<Dst>(src[i]);
}

double load_as_double(const void* base, DType t, int64_t i) {
  switch (t) {
    case DType::f32:
      return static_cast<const float*>(base)[i];
    case DType::f64:
      return static_cast<const double*>(base)[i];
    case DType::bf16:
      return to_float(static_cast<const bf16*>(base)[i]);
    case DType::i32:
      return static_cast<const int32_t*>(base)[i];
    case DType::i64:
      return static_cast<double>(static_cast<const int64_t*>(base)[i]);
  }
  return 0;
}

void store_double(void* base, DType t, int64_t i, double v) {
  switch (t) {
    case DType::f32:
      static_cast<float*>(base)[i] = static_cast<float>(v);
      break;
    case DType::f64:
      static_cast<double*>(base)[i] = v;
      break;
    case DType::bf16:
      static_cast<bf16*>(base)[i] = to_bf16(static_cast<float>(v));
      break;
    case DType::i32:
      static_cast<int32_t*>(base)[i] = static_cast<int32_t>(v);
      break;
    case DType::i64:
      static_cast<int64_t*>(base)[i] = static_cast<int64_t>(v);
      break;
  }
}

}  // namespace

Tensor Tensor::to(DType dtype) const {
  require_defined("to");
  SW_CHECK_ARG(is_floating(dtype) == is_floating(dtype_), "to: cannot convert ", str(), " to ",
               dtype_name(dtype));
  if (on_cuda(*this)) {
    if (dtype == dtype_) return to(device());
    Tensor out = empty(shape_, dtype, device());
    SW_RUN_ON_CUDA([&] {
      kernels::convert(*this, out);
      return out;
    }());
  }
  Tensor out = empty(shape_, dtype);
  const int64_t n = numel();
  if (dtype == dtype_) {
    if (n) std::memcpy(out.raw(), raw(), nbytes());
  } else if (dtype_ == DType::f32 && dtype == DType::f64) {
    convert(data<float>(), out.data<double>(), n);
  } else if (dtype_ == DType::f64 && dtype == DType::f32) {
    convert(data<double>(), out.data<float>(), n);
  } else if (dtype_ == DType::i32 && dtype == DType::i64) {
    convert(data<int32_t>(), out.data<int64_t>(), n);
  } else if (dtype_ == DType::i64 && dtype == DType::i32) {
    const int64_t* src = data<int64_t>();
    for (int64_t i = 0; i < n; ++i)
      SW_CHECK(src[i] >= INT32_MIN && src[i] <= INT32_MAX, Status::kOutOfRange, "to(i32): value ",
               src[i], " at flat position ", i, " does not fit in 32 bits");
    convert(src, out.data<int32_t>(), n);
  } else {
    for (int64_t i = 0; i < n; ++i)
      store_double(out.raw(), dtype, i, load_as_double(raw(), dtype_, i));
  }
  return out;
}

Tensor Tensor::clone() const { return to(dtype_); }

void Tensor::fill(double value) {
  require_defined("fill");
  SW_CHECK(device().is_cpu(), Status::kUnsupported, "fill: only cpu tensors here, got ", str());
  const int64_t n = numel();
  for (int64_t i = 0; i < n; ++i) store_double(raw(), dtype_, i, value);
}

void Tensor::copy_from(const Tensor& other) {
  require_defined("copy_from");
  other.require_defined("copy_from");
  SW_CHECK_ARG(other.shape_ == shape_ && other.dtype_ == dtype_, "copy_from: ", other.str(),
               " into ", str());
  copy_bytes(raw(), device(), other.raw(), other.device(), nbytes());
}

double Tensor::item(int64_t i) const {
  require_defined("item");
  SW_CHECK(i >= 0 && i < numel(), Status::kOutOfRange, "item ", i, " out of range for ", str());
  SW_CHECK(device().is_cpu(), Status::kUnsupported, "item: only cpu tensors here");
  return load_as_double(raw(), dtype_, i);
}

std::string Tensor::str() const {
  return std::string(dtype_name(dtype_)) + shape_str(shape_) + " on " + device().str();
}

void check_shape(const Tensor& t, const Shape& expected, const char* what) {
  bool ok = t.ndim() == static_cast<int>(expected.size());
  for (size_t i = 0; ok && i < expected.size(); ++i)
    ok = expected[i] < 0 || expected[i] == t.shape()[i];
  SW_CHECK_ARG(ok, what, ": expected shape ", shape_str(expected), ", got ", shape_str(t.shape()));
}

void check_dtype(const Tensor& t, DType expected, const char* what) {
  SW_CHECK_ARG(t.dtype() == expected, what, ": expected dtype ", dtype_name(expected), ", got ",
               dtype_name(t.dtype()));
}

}  // namespace sw
