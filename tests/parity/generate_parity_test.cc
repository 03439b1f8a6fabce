// Generation on the GPU against the CPU path: the same ids for greedy, beam search and
// seeded sampling in f32 (the search runs on the host over each step's logits, so equal
// logits give equal ids), on `tiny` with padded rows of different lengths and on the HF
// generation fixture (whose CPU ids equal transformers', HfParityVaried.*); in bf16 the
// share of positions before each row's first divergence. Compiled in every build; each
// test skips without a CUDA device.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/infer/generate.h"
#include "core/io/hf_checkpoint.h"
#include "core/io/safetensors.h"
#include "core/model/switch_transformer.h"
#include "parity_util.h"

namespace sw {
namespace {

using parity::kGpu;
using GenerateParity = parity::GpuTest;

// Three rows of random ids, the second and third padded at the end.
void tiny_inputs(int64_t vocab, Tensor& ids, Tensor& mask) {
  const RandomStream s(4, RandomPurpose::kData, 0, 0);
  std::vector<int32_t> id(3 * 14), m(3 * 14, 1);
  for (size_t i = 0; i < id.size(); ++i)
    id[i] = 2 + static_cast<int32_t>(s.uniform(i) * static_cast<double>(vocab - 2));
  for (int j = 9; j < 14; ++j) m[14 + j] = 0;
  for (int j = 5; j < 14; ++j) m[28 + j] = 0;
  ids = Tensor::from_vector<int32_t>(id, {3, 14});
  mask = Tensor::from_vector<int32_t>(m, {3, 14});
}

std::vector<GenerateOptions> searches() {
  GenerateOptions greedy;
  greedy.max_new_tokens = 16;
  GenerateOptions beams = greedy;
  beams.num_beams = 4;
  GenerateOptions sampled = greedy;
  sampled.temperature = 0.8;
  sampled.top_p = 0.9;
  sampled.seed = 5;
  GenerateOptions longer = greedy;
  longer.min_new_tokens = 6;
  longer.dropless = true;
  return {greedy, beams, sampled, longer};
}

TEST_F(GenerateParity, TinyGreedyBeamsAndSamplingGiveTheCpuIds) {
  const ModelConfig config = preset("tiny");
  const SwitchTransformer cpu(config, 9);
  const SwitchTransformer dev = cpu.copy_to(kGpu, DType::f32);
  Tensor ids, mask;
  tiny_inputs(config.vocab_size(), ids, mask);
  for (const GenerateOptions& o : searches()) {
    SCOPED_TRACE(::testing::Message() << "beams " << o.num_beams << " temperature " << o.temperature
                                      << " dropless " << o.dropless);
    EXPECT_EQ(generate(dev, ids, mask, o), generate(cpu, ids, mask, o));
  }
}

// The HF generation fixture: the GPU gives the CPU's ids, which are transformers'.
TEST_F(GenerateParity, HfFixtureGivesTheCpuIds) {
  const std::string dir = parity::data_dir("SW_HF_GENERATE_FIXTURE", SW_HF_GENERATE_FIXTURE_DIR);
  const SwitchTransformer cpu = import_hf(dir + "/config.json", dir + "/model.safetensors");
  const SwitchTransformer dev = cpu.copy_to(kGpu, DType::f32);
  const SafetensorsFile inputs = read_safetensors(dir + "/inputs.safetensors");
  const Tensor& ids = inputs.tensors.at("input_ids");
  const Tensor& mask = inputs.tensors.at("attention_mask");
  for (int64_t beams : {1, 3, 4}) {
    GenerateOptions o;
    o.max_new_tokens = 20;
    o.num_beams = beams;
    o.length_penalty = beams == 4 ? 0.6 : 1.0;
    EXPECT_EQ(generate(dev, ids, mask, o), generate(cpu, ids, mask, o)) << beams << " beams";
  }
}

// bf16: greedy ids until each row's first divergence from the f32 CPU run, as a share of
// the CPU's positions (reported; at least 95%).
TEST_F(GenerateParity, Bf16GreedyAgreesBeforeItsFirstDivergence) {
  const std::string dir = parity::data_dir("SW_HF_GENERATE_FIXTURE", SW_HF_GENERATE_FIXTURE_DIR);
  const SwitchTransformer cpu = import_hf(dir + "/config.json", dir + "/model.safetensors");
  const SwitchTransformer bf16 = cpu.copy_to(kGpu, DType::bf16);
  const SafetensorsFile inputs = read_safetensors(dir + "/inputs.safetensors");
  GenerateOptions o;
  o.max_new_tokens = 20;
  const auto ref =
      generate(cpu, inputs.tensors.at("input_ids"), inputs.tensors.at("attention_mask"), o);
  const auto got =
      generate(bf16, inputs.tensors.at("input_ids"), inputs.tensors.at("attention_mask"), o);
  ASSERT_EQ(got.size(), ref.size());
  size_t agreed = 0, total = 0;
  for (size_t r = 0; r < ref.size(); ++r) {
    size_t n = 0;
    while (n < ref[r].size() && n < got[r].size() && ref[r][n] == got[r][n]) ++n;
    agreed += n;
    total += ref[r].size();
  }
  const double share = total ? static_cast<double>(agreed) / static_cast<double>(total) : 1.0;
  RecordProperty("bf16_prefix_share", std::to_string(share));
  std::printf("bf16 greedy: %zu of %zu positions before the first divergence (%.1f%%)\n", agreed,
              total, 100 * share);
  EXPECT_GE(share, 0.95);
}

}  // namespace
}  // namespace sw
