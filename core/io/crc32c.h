// CRC-32C (Castagnoli), hardware-accelerated through ISA-L: checkpoint tensors and
// manifests, TensorBoard's record framing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sw {

uint32_t crc32c(const void* data, size_t n);

}  // namespace sw
