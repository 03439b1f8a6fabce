// Shared by the fuzz targets: a scratch directory per process and the rule every target
// checks. A parser may refuse its input only with an sw::Error (a clear message naming
// the problem); a crash, a sanitizer report, a hang or any other exception is a finding.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "core/tensor/error.h"

namespace sw::fuzz {

// A directory for this process's files (in /dev/shm when there is one: the targets write
// a file per input).
inline const std::string& scratch() {
  static const std::string dir = [] {
    const char* base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string tmpl = std::string(base) + "/sw_fuzz_XXXXXX";
    const char* made = ::mkdtemp(tmpl.data());
    if (!made) abort();
    return std::string(made);
  }();
  return dir;
}

inline void write_bytes(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// Runs f; an sw::Error is the expected refusal of bad input, with a message.
template <typename F>
void expect_clean(F f) {
  try {
    f();
  } catch (const Error& e) {
    if (std::string(e.what()).empty()) abort();  // a refusal must say why
  }
}

}  // namespace sw::fuzz
