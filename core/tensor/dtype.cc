#include "core/tensor/dtype.h"

#include <cstdlib>

#include "core/tensor/error.h"

namespace sw {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::f64:
      return 8;
    case DType::bf16:
      return 2;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
  }
  throw Error(Status::kInternal, "dtype_size: unknown dtype");
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f64:
      return "f64";
    case DType::bf16:
      return "bf16";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
  }
  return "unknown";
}

bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16; }

DType model_dtype_from_name(const std::string& name) {
  for (DType t : {DType::f32, DType::f64, DType::bf16})
    if (name == dtype_name(t)) return t;
  throw Error(Status::kInvalidArgument,
              "dtype: expected \"f32\", \"f64\" or \"bf16\", got \"" + name + "\"");
}

Device Device::parse(const std::string& text) {
  if (text == "cpu") return cpu();
  if (text == "cuda") return cuda(0);
  if (text.rfind("cuda:", 0) == 0 && text.size() > 5) {
    const std::string digits = text.substr(5);
    char* end = nullptr;
    const long index = std::strtol(digits.c_str(), &end, 10);
    if (*end == '\0' && digits.find_first_not_of("0123456789") == std::string::npos) {
      SW_CHECK_ARG(digits.size() <= 4 && index < 1024, "device \"", text,
                   "\": the device index must be < 1024 (and below the number of visible devices)");
      return cuda(static_cast<int>(index));
    }
  }
  throw Error(Status::kInvalidArgument,
              "device: expected \"cpu\", \"cuda\" or \"cuda:N\", got \"" + text + "\"");
}

std::string Device::str() const {
  return kind == Kind::cpu ? std::string("cpu") : "cuda:" + std::to_string(index);
}

}  // namespace sw
