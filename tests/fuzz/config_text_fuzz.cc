// Config text (protobuf text format): a ModelConfig, then the same bytes as a TrainConfig,
// each validated; a `--set key=value` override from the input's first line.
#include "core/model/config.h"
#include "core/train/train_config.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  sw::fuzz::expect_clean([&] {
    const sw::ModelConfig c = sw::config_from_text(text);
    sw::validate(c);
    sw::count_parameters(c);
  });
  sw::fuzz::expect_clean([&] { sw::validate(sw::train_config_from_text(text)); });
  sw::fuzz::expect_clean([&] {
    sw::TrainConfig t;
    sw::apply_override(t, text.substr(0, text.find('\n')));
    sw::validate(t);
  });
  return 0;
}
