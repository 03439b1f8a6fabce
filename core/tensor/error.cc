#include "core/tensor/error.h"

namespace sw {

const char* status_name(Status s) {
  switch (s) {
    case Status::kOk:
      return "ok";
    case Status::kInvalidArgument:
      return "invalid argument";
    case Status::kOutOfRange:
      return "out of range";
    case Status::kNotFound:
      return "not found";
    case Status::kIo:
      return "I/O error";
    case Status::kCorrupt:
      return "corrupt data";
    case Status::kUnsupported:
      return "unsupported";
    case Status::kDevice:
      return "device error";
    case Status::kOutOfMemory:
      return "out of memory";
    case Status::kDistributed:
      return "distributed error";
    case Status::kNumeric:
      return "numeric error";
    case Status::kInternal:
      return "internal error";
    case Status::kCancelled:
      return "cancelled";
  }
  return "unknown status";
}

}  // namespace sw
