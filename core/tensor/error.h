// sw::Error: the one exception type of the core. The C ABI turns it into an sw_status.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace sw {

// Mirrors sw_status in capi/include/libswitch.h (append-only, same values).
enum class Status : int {
  kOk = 0,
  kInvalidArgument = 1,
  kOutOfRange = 2,
  kNotFound = 3,
  kIo = 4,
  kCorrupt = 5,
  kUnsupported = 6,
  kDevice = 7,
  kOutOfMemory = 8,
  kDistributed = 9,
  kNumeric = 10,
  kInternal = 11,
  kCancelled = 12,  // stopped on request (e.g. generation, between decoding steps)
};

const char* status_name(Status s);

class Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  Status status() const { return status_; }

 private:
  Status status_;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
}  // namespace detail

}  // namespace sw

// Throws sw::Error(status, message...) when cond is false. The message parts are
// streamed, so callers name the argument and the bad value.
#define SW_CHECK(cond, status, ...)                                              \
  do {                                                                           \
    if (!(cond)) throw ::sw::Error((status), ::sw::detail::concat(__VA_ARGS__)); \
  } while (0)

#define SW_CHECK_ARG(cond, ...) SW_CHECK(cond, ::sw::Status::kInvalidArgument, __VA_ARGS__)
