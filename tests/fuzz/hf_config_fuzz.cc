// HF config.json: JSON of any shape mapped to a ModelConfig, which must then validate
// and map back.
#include "core/io/hf_checkpoint.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  sw::fuzz::expect_clean([&] {
    const sw::ModelConfig c = sw::config_from_hf_json(text);
    sw::validate(c);  // what the importer returns is a model it can build
    sw::config_from_hf_json(sw::config_to_hf_json(c));
  });
  return 0;
}
