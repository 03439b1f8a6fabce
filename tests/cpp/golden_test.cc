// The whole forward pass against the independent numpy reference (tests/reference),
// written from docs/MATH.md: the golden files hold the config, the weights, the inputs and the
// expected outputs. f32 must agree within 1e-5 relative, f64 within 1e-10, and routing
// decisions exactly.
#include <gtest/gtest.h>

#include <set>

#include "core/io/safetensors.h"
#include "core/model/switch_transformer.h"
#include "test_util.h"

namespace sw {
namespace {

struct GoldenCase {
  const char* name;
  DType dtype;
  double tolerance;
};

void PrintTo(const GoldenCase& c, std::ostream* os) {
  *os << c.name << " in " << dtype_name(c.dtype);
}

std::string case_name(const ::testing::TestParamInfo<GoldenCase>& info) {
  return std::string(info.param.name) + "_" + dtype_name(info.param.dtype);
}

class GoldenTest : public ::testing::TestWithParam<GoldenCase> {};

Tensor input(const SafetensorsFile& f, const std::string& name) {
  return f.tensors.at("input." + name);
}

double scalar(const SafetensorsFile& f, const std::string& name) {
  return f.tensors.at("expected." + name).item(0);
}

TEST_P(GoldenTest, ForwardMatchesReference) {
  const GoldenCase& c = GetParam();
  const SafetensorsFile f =
      read_safetensors(std::string(SW_GOLDEN_DIR) + "/" + c.name + ".safetensors");
  const ModelConfig config = config_from_text(f.metadata.at("config"));
  SwitchTransformer model(config, /*seed=*/1, c.dtype);

  // The file holds exactly the model's parameters, by HF name.
  std::set<std::string> in_file;
  for (const auto& [name, t] : f.tensors)
    if (name.rfind("input.", 0) != 0 && name.rfind("expected.", 0) != 0) in_file.insert(name);
  const std::vector<std::string> names = model.parameters().names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), in_file);
  for (const std::string& name : names) model.parameters().set(name, f.tensors.at(name));

  Batch batch;
  batch.input_ids = input(f, "input_ids");
  batch.attention_mask = input(f, "attention_mask");
  batch.decoder_input_ids = input(f, "decoder_input_ids");
  batch.decoder_attention_mask = input(f, "decoder_attention_mask");
  batch.labels = input(f, "labels");
  const ForwardOutput out = model.forward(batch);

  EXPECT_LE(
      testing::max_relative_error(out.encoder_output, f.tensors.at("expected.encoder_output")),
      c.tolerance);
  EXPECT_LE(testing::max_relative_error(out.logits, f.tensors.at("expected.logits")), c.tolerance);
  for (const char* loss : {"loss", "ce_loss", "aux_loss", "z_loss"}) {
    const double expected = scalar(f, loss);
    const double got = std::string(loss) == "loss"       ? out.loss
                       : std::string(loss) == "ce_loss"  ? out.ce_loss
                       : std::string(loss) == "aux_loss" ? out.aux_loss
                                                         : out.z_loss;
    EXPECT_NEAR(got, expected, c.tolerance * std::max(1.0, std::fabs(expected))) << loss;
  }

  // Routing: the same sparse blocks, identical decisions, identical counts.
  size_t sparse_in_file = 0;
  for (const auto& [name, t] : f.tensors)
    if (name.rfind("expected.routing.", 0) == 0 && name.size() > 13 &&
        name.compare(name.size() - 13, 13, ".expert_index") == 0)
      ++sparse_in_file;
  ASSERT_EQ(out.routing.size(), sparse_in_file);
  for (const LayerRouting& r : out.routing) {
    const std::string p = std::string("expected.routing.") + stack_name(r.stack) + "." +
                          std::to_string(r.block) + ".";
    SCOPED_TRACE(p);
    const Tensor& index = f.tensors.at(p + "expert_index");
    ASSERT_EQ(index.numel(), r.expert_index.numel());
    for (int64_t i = 0; i < index.numel(); ++i)
      ASSERT_EQ(r.expert_index.item(i), index.item(i)) << "token " << i;
    const Tensor& tokens = f.tensors.at(p + "tokens_per_expert");
    const Tensor& kept = f.tensors.at(p + "kept_per_expert");
    for (int64_t e = 0; e < config.num_experts(); ++e) {
      EXPECT_EQ(r.stats.tokens_per_expert[e], tokens.item(e)) << "expert " << e;
      EXPECT_EQ(r.stats.kept_per_expert[e], kept.item(e)) << "expert " << e;
    }
    EXPECT_DOUBLE_EQ(r.stats.dropped_fraction, f.tensors.at(p + "dropped_fraction").item(0));
    EXPECT_NEAR(r.stats.router_entropy, f.tensors.at(p + "router_entropy").item(0),
                c.tolerance * 10);
  }
}

INSTANTIATE_TEST_SUITE_P(Reference, GoldenTest,
                         ::testing::Values(GoldenCase{"dense", DType::f32, 1e-5},
                                           GoldenCase{"dense", DType::f64, 1e-10},
                                           GoldenCase{"switch_dropping", DType::f32, 1e-5},
                                           GoldenCase{"switch_dropping", DType::f64, 1e-10},
                                           GoldenCase{"switch_placements", DType::f32, 1e-5},
                                           GoldenCase{"switch_placements", DType::f64, 1e-10},
                                           GoldenCase{"switch_fixed_groups", DType::f32, 1e-5},
                                           GoldenCase{"switch_fixed_groups", DType::f64, 1e-10},
                                           GoldenCase{"switch_t5x_step3", DType::f32, 1e-5},
                                           GoldenCase{"switch_t5x_step3", DType::f64, 1e-10},
                                           GoldenCase{"switch_dropless", DType::f32, 1e-5},
                                           GoldenCase{"switch_dropless", DType::f64, 1e-10}),
                         case_name);

}  // namespace
}  // namespace sw
