// The safetensors reader (HF weights, golden files): header length, JSON header, dtypes,
// shapes, offsets and metadata of arbitrary files.
#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = sw::fuzz::scratch() + "/input.safetensors";
  sw::fuzz::write_bytes(path, data, size);
  sw::fuzz::expect_clean([&] { sw::read_safetensors(path); });
  return 0;
}
