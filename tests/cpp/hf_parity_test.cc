// Parity with HuggingFace transformers: the checked-in fixture (tests/reference/
// make_hf_fixture.py: a tiny random SwitchTransformers model saved by HF, a padded batch,
// and HF's eval-mode logits, cross-entropy, aux and z losses, and what HF's `generate`
// produces) imported through import_hf must give the same numbers and ids. The fixture's
// expert capacity drops tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/infer/generate.h"
#include "core/io/hf_checkpoint.h"
#include "core/io/safetensors.h"
#include "test_util.h"

namespace {

const std::string kFixture = SW_HF_FIXTURE_DIR;

// The fixture's model imported through import_hf, its batch and HF's outputs.
class HfParity : public ::testing::Test {
 protected:
  static nlohmann::json read_json(const std::string& name) {
    nlohmann::json j;
    std::ifstream(kFixture + "/" + name) >> j;
    return j;
  }
  const sw::SwitchTransformer model =
      sw::import_hf(kFixture + "/config.json", kFixture + "/model.safetensors");
  const sw::SafetensorsFile data = sw::read_safetensors(kFixture + "/expected.safetensors");
};

// A fixture's model, imported, on its batch against HF's eval-mode outputs: logits within
// 1e-4, the CE, aux and z losses within 1e-5, with tokens dropped by capacity.
void expect_forward_matches(const sw::SwitchTransformer& model, const std::string& dir) {
  nlohmann::json expected;
  std::ifstream(dir + "/expected.json") >> expected;
  ASSERT_FALSE(expected.is_null()) << "no expected.json in " << dir;
  const sw::SafetensorsFile data = sw::read_safetensors(dir + "/expected.safetensors");
  sw::Batch b;
  b.input_ids = data.tensors.at("input_ids");
  b.attention_mask = data.tensors.at("attention_mask");
  b.decoder_input_ids = data.tensors.at("decoder_input_ids");
  b.labels = data.tensors.at("labels");
  const sw::ForwardOutput out = model.forward(b);  // eval mode, as the fixture

  int64_t dropped = 0;
  for (const sw::LayerRouting& r : out.routing)
    for (size_t e = 0; e < r.stats.tokens_per_expert.size(); ++e)
      dropped += r.stats.tokens_per_expert[e] - r.stats.kept_per_expert[e];
  EXPECT_GT(dropped, 0) << "the fixture should exercise capacity dropping";

  EXPECT_LE(sw::testing::max_relative_error(out.logits, data.tensors.at("logits")), 1e-4);
  const double ce = expected["ce"];
  EXPECT_NEAR(out.ce_loss, ce, 1e-5 * ce);
  const double aux =
      expected["router_aux_loss_coef"].get<double>() *
      (expected["encoder_aux_loss"].get<double>() + expected["decoder_aux_loss"].get<double>());
  EXPECT_NEAR(out.aux_loss, aux, 1e-5 * aux);
  const double z =
      expected["router_z_loss_coef"].get<double>() *
      (expected["encoder_z_loss"].get<double>() + expected["decoder_z_loss"].get<double>());
  EXPECT_NEAR(out.z_loss, z, 1e-5 * z);
  EXPECT_NEAR(out.loss, expected["loss"].get<double>(), 1e-5 * expected["loss"].get<double>());
}

TEST_F(HfParity, ImportedModelMatchesTransformers) { expect_forward_matches(model, kFixture); }

// An untied model as transformers 5 builds it (make_hf_fixture.py --untied): each stack
// embeds with its own table, different from the other's and from the unused `shared`.
TEST(HfParityUntied, ImportedModelMatchesTransformers) {
  const std::string dir = kFixture + "/../hf_untied_fixture";
  const sw::SwitchTransformer model =
      sw::import_hf(dir + "/config.json", dir + "/model.safetensors");
  EXPECT_TRUE(model.config().separate_input_embeddings());
  EXPECT_GT(sw::testing::max_relative_error(model.parameters().get("encoder.embed_tokens.weight"),
                                            model.parameters().get("decoder.embed_tokens.weight")),
            0.1);
  expect_forward_matches(model, dir);
}

// HF `generate` on the fixture's padded batch (make_hf_fixture.py --generate): greedy
// decoding with the KV cache gives HF's ids; so does beam search with 3 beams, length
// penalty 1 and early stopping. Decoding steps route one token per sequence, so HF's
// fixed capacity drops nothing there, as here.
TEST_F(HfParity, GenerateMatchesTransformers) {
  const nlohmann::json expected = read_json("expected_generate.json");
  ASSERT_FALSE(expected.is_null()) << "no expected_generate.json in " << kFixture;
  sw::GenerateOptions o;
  o.max_new_tokens = expected["max_new_tokens"].get<int64_t>();
  const sw::Tensor& ids = data.tensors.at("input_ids");
  const sw::Tensor& mask = data.tensors.at("attention_mask");
  EXPECT_EQ(sw::generate(model, ids, mask, o),
            expected["greedy"].get<std::vector<std::vector<int32_t>>>());
  o.num_beams = 3;
  o.length_penalty = 1.0;
  o.early_stopping = true;
  EXPECT_EQ(sw::generate(model, ids, mask, o),
            expected["beam3"].get<std::vector<std::vector<int32_t>>>());
}

// A model made to generate varied rows that end at different steps, with more finished
// beam hypotheses than beams (tests/reference/make_hf_fixture.py --varied-generation):
// greedy and beam search, early_stopping false and true, and a length penalty, each equal
// to transformers' generate.
TEST(HfParityVaried, GenerateMatchesTransformersOnRowsOfDifferentLengths) {
  const std::string dir = kFixture + "/../hf_generate_fixture";
  nlohmann::json expected;
  std::ifstream(dir + "/expected_generate.json") >> expected;
  ASSERT_FALSE(expected.is_null()) << "no expected_generate.json in " << dir;
  const sw::SwitchTransformer model =
      sw::import_hf(dir + "/config.json", dir + "/model.safetensors");
  const sw::SafetensorsFile inputs = sw::read_safetensors(dir + "/inputs.safetensors");
  const sw::Tensor& ids = inputs.tensors.at("input_ids");
  const sw::Tensor& mask = inputs.tensors.at("attention_mask");
  struct Run {
    const char* name;
    int64_t beams;
    double length_penalty;
    bool early_stopping;
  };
  for (const Run& run : {Run{"greedy", 1, 1.0, false}, Run{"beam3", 3, 1.0, false},
                         Run{"beam3_early", 3, 1.0, true}, Run{"beam4_penalty", 4, 0.6, false}}) {
    sw::GenerateOptions o;
    o.max_new_tokens = expected["max_new_tokens"].get<int64_t>();
    o.num_beams = run.beams;
    o.length_penalty = run.length_penalty;
    o.early_stopping = run.early_stopping;
    EXPECT_EQ(sw::generate(model, ids, mask, o),
              expected[run.name].get<std::vector<std::vector<int32_t>>>())
        << run.name;
  }
  // The fixture shows what it is for: rows of different lengths, some ended by eos.
  const auto greedy = expected["greedy"].get<std::vector<std::vector<int32_t>>>();
  EXPECT_NE(greedy[0].size(), greedy[1].size());
  EXPECT_NE(expected["beam3"], expected["beam3_early"]);
}

}  // namespace
