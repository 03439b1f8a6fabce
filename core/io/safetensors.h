// Reading the safetensors format (HF checkpoints, the reference golden files): an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, an
// optional "__metadata__" map of strings, then the raw tensor bytes.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/tensor.h"

namespace sw {

struct SafetensorsFile {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::string> metadata;
};

// Loads every tensor (F32, F64, BF16, I32, I64) into cpu memory. A missing file is a
// not-found error; an unknown dtype is an unsupported error; a truncated file, a bad
// header, or offsets that do not match the shape or lie outside the data are corrupt-data
// errors. Each names the file and the tensor.
SafetensorsFile read_safetensors(const std::string& path);

// Writes tensors (in this order) and metadata; the header is padded to 8 bytes as the
// reference implementation does. Written to a temporary name and renamed.
void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sw
