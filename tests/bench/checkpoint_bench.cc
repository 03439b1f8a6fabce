// Checkpoint throughput: save and load of a switch-base-8-sized model (619M f32 parameters,
// 2.48 GB) against `cp -r` of the same directory on the same disk, in the same run. Save
// includes CRC-32C of every tensor and fsync of every file; load includes reading and
// verifying every byte. Prints MB/s and the ratio to cp.
//   build/tests/sw_checkpoint_bench [DIR]   (default /tmp/sw_checkpoint_bench)
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/io/checkpoint.h"
#include "core/model/switch_transformer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  const fs::path root = argc > 1 ? argv[1] : "/tmp/sw_checkpoint_bench";
  fs::remove_all(root);
  std::printf("building switch-base-8...\n");
  const sw::SwitchTransformer model(sw::preset("switch-base-8"), 0);
  sw::Checkpoint c;
  c.model = model.config();
  for (const auto& e : model.parameters().entries()) c.parameters.push_back({e.name, e.tensor});
  const double mb = static_cast<double>(model.parameters().num_elements()) * 4 / 1e6;

  auto start = std::chrono::steady_clock::now();
  const std::string dir = sw::save_checkpoint((root / "ckpt").string(), c);
  const double save_s = seconds_since(start);
  ::sync();
  start = std::chrono::steady_clock::now();
  const sw::Checkpoint back = sw::load_checkpoint(dir);
  const double load_s = seconds_since(start);
  start = std::chrono::steady_clock::now();
  const std::string cp = "cp -r '" + dir + "' '" + (root / "copy").string() + "' && sync";
  if (std::system(cp.c_str()) != 0) return 1;
  const double cp_s = seconds_since(start);

  std::printf("%zu tensors, %.0f MB\n", back.parameters.size(), mb);
  std::printf("%-28s %8s %10s %8s\n", "", "s", "MB/s", "vs cp");
  std::printf("%-28s %8.2f %10.0f %8.2f\n", "save (crc32c, fsync)", save_s, mb / save_s,
              cp_s / save_s);
  std::printf("%-28s %8.2f %10.0f %8.2f\n", "load (read, verify)", load_s, mb / load_s,
              cp_s / load_s);
  std::printf("%-28s %8.2f %10.0f %8.2f\n", "cp -r + sync", cp_s, mb / cp_s, 1.0);
  fs::remove_all(root);
  return 0;
}
