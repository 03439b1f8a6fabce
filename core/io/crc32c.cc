#include "core/io/crc32c.h"

#include <isa-l/crc.h>

#include <algorithm>

namespace sw {

uint32_t crc32c(const void* data, size_t n) {
  // ISA-L's crc32_iscsi is CRC-32C without the final inversion; int-sized chunks.
  uint32_t state = 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  while (n > 0) {
    const size_t chunk = std::min<size_t>(n, size_t{1} << 30);
    state = crc32_iscsi(const_cast<unsigned char*>(p), static_cast<int>(chunk), state);
    p += chunk;
    n -= chunk;
  }
  return ~state;
}

}  // namespace sw
