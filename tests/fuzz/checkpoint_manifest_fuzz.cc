// The checkpoint manifest (manifest.pb) under load_checkpoint: each input replaces the
// manifest of a small valid checkpoint whose shard stays in place, so index entries that
// point past the shard, lie about dtypes and shapes or fail their checksums are reached.
#include <cstdio>

#include "core/io/checkpoint.h"
#include "tests/fuzz/fuzz.h"

namespace {

const std::string& checkpoint_dir() {
  static const std::string dir = [] {
    sw::Checkpoint c;
    c.step = 1;
    c.model = sw::preset("tiny");
    c.seed = 7;
    c.parameters = {{"a", sw::Tensor::from_vector<float>({0, 1, 2, 3}, {2, 2})},
                    {"b", sw::Tensor::from_vector<int32_t>({5, 6}, {2})}};
    c.optimizer_state = {{"a/v", sw::Tensor::from_vector<double>({1, 2}, {2})}};
    const std::string saved = sw::save_checkpoint(sw::fuzz::scratch() + "/ckpt", c);
    // Without the manifest's checksum every input would stop there: the parser is the
    // target.
    std::remove((saved + "/manifest.crc32c").c_str());
    return saved;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = checkpoint_dir();
  sw::fuzz::write_bytes(dir + "/manifest.pb", data, size);
  sw::fuzz::expect_clean([&] { sw::load_checkpoint(dir); });
  return 0;
}
