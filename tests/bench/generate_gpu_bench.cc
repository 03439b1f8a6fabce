// Generation on the GPU: `switch-base-8` (seed 0) in bf16 on cuda:0, greedy with the
// decoder's key/value cache, 512 input tokens and exactly 128 new ones (min_new_tokens),
// at batch 1, 8 and 64: tokens/s and, at batch 1, milliseconds per token. The model is also
// exported in HF's format with the inputs and our ids beside it, so
// hf_generate_gpu_bench.py times transformers' generate on the same weights and inputs.
//
// usage: sw_generate_gpu_bench --out DIR [--csv FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/infer/generate.h"
#include "core/io/hf_checkpoint.h"
#include "core/model/switch_transformer.h"
#include "kernels/device.cuh"

namespace {

constexpr int64_t kInputLen = 512, kNewTokens = 128;

void write_ids(const std::string& path, const std::vector<int32_t>& ids) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(ids.data()),
             static_cast<std::streamsize>(ids.size() * sizeof(int32_t)));
}

}  // namespace

int main(int argc, char** argv) {
  std::string out_dir, csv;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--out")
      out_dir = argv[i + 1];
    else if (flag == "--csv")
      csv = argv[i + 1];
  }
  if (out_dir.empty()) {
    std::fprintf(stderr, "usage: sw_generate_gpu_bench --out DIR [--csv FILE]\n");
    return 2;
  }
  if (sw::cuda_device_count() == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  std::filesystem::create_directories(out_dir);
  const sw::ModelConfig config = sw::preset("switch-base-8");
  const sw::SwitchTransformer cpu(config, 0);
  sw::export_hf(cpu, out_dir + "/hf", /*allow_routing_change=*/true);
  const sw::SwitchTransformer model = cpu.copy_to(sw::Device::cuda(0), sw::DType::bf16);
  sw::GenerateOptions o;
  o.max_new_tokens = o.min_new_tokens = kNewTokens;
  struct Row {
    int64_t batch;
    double seconds;
  };
  std::vector<Row> rows;
  for (int64_t batch : {1, 8, 64}) {
    const sw::RandomStream s(7, sw::RandomPurpose::kData, static_cast<uint32_t>(batch), 0);
    std::vector<int32_t> ids(static_cast<size_t>(batch * kInputLen));
    for (size_t i = 0; i < ids.size(); ++i)
      ids[i] =
          2 + static_cast<int32_t>(s.uniform(i) * static_cast<double>(config.vocab_size() - 2));
    write_ids(out_dir + "/input_" + std::to_string(batch) + ".i32", ids);
    const sw::Tensor input = sw::Tensor::from_vector<int32_t>(ids, {batch, kInputLen});
    std::vector<std::vector<int32_t>> generated = sw::generate(model, input, sw::Tensor(), o);
    std::vector<double> seconds;
    for (int rep = 0; rep < 2; ++rep) {
      const auto start = std::chrono::steady_clock::now();
      generated = sw::generate(model, input, sw::Tensor(), o);
      sw::kernels::synchronize(0);
      seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::vector<int32_t> flat;
    for (const auto& row : generated) flat.insert(flat.end(), row.begin(), row.end());
    write_ids(out_dir + "/ours_" + std::to_string(batch) + ".i32", flat);
    rows.push_back({batch, *std::min_element(seconds.begin(), seconds.end())});
    std::fprintf(stderr, "generate batch %lld done\n", static_cast<long long>(batch));
  }
  std::printf(
      "\n| bf16 generation, switch-base-8, input %lld, %lld new | batch | tokens/s | ms "
      "per step |\n|---|---|---|---|\n",
      static_cast<long long>(kInputLen), static_cast<long long>(kNewTokens));
  for (const Row& r : rows)
    std::printf("| libswitch | %lld | %.0f | %.2f |\n", static_cast<long long>(r.batch),
                static_cast<double>(r.batch * kNewTokens) / r.seconds,
                1e3 * r.seconds / static_cast<double>(kNewTokens));
  if (!csv.empty())
    if (FILE* f = std::fopen(csv.c_str(), "w")) {
      std::fprintf(f, "batch,seconds,tokens_per_s\n");
      for (const Row& r : rows)
        std::fprintf(f, "%lld,%.5f,%.1f\n", static_cast<long long>(r.batch), r.seconds,
                     static_cast<double>(r.batch * kNewTokens) / r.seconds);
      std::fclose(f);
    }
  return 0;
}
