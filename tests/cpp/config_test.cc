// ModelConfig: text parsing, validation messages, presets and the derived rules.
#include "core/model/config.h"

#include <gtest/gtest.h>

#include "core/model/switch_transformer.h"
#include "core/tensor/error.h"
#include "core/train/train_config.h"

namespace sw {
namespace {

// The message of the invalid-argument error that parsing `text` raises.
std::string error_of(const std::string& text) {
  try {
    config_from_text(text);
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kInvalidArgument);
    return e.what();
  }
  ADD_FAILURE() << "no error for: " << text;
  return "";
}

TEST(Config, TextOverDefaults) {
  const ModelConfig c =
      config_from_text("d_model: 32\nactivation: GATED_GELU\n# a comment\nnum_experts: 4");
  EXPECT_EQ(c.d_model(), 32);
  EXPECT_EQ(c.activation(), ModelConfig::GATED_GELU);
  EXPECT_EQ(c.num_experts(), 4);
  EXPECT_EQ(c.vocab_size(), 32128);  // default
  EXPECT_DOUBLE_EQ(c.norm_epsilon(), 1e-6);
}

TEST(Config, ValidationNamesTheFieldAndTheReason) {
  EXPECT_NE(error_of("num_experts: 0").find("num_experts: must be >= 1, got 0"), std::string::npos);
  EXPECT_NE(error_of("dropout_rate: 1.5").find("dropout_rate: must be in [0, 1), got 1.5"),
            std::string::npos);
  EXPECT_NE(error_of("vocab_size: 100\npad_token_id: 100")
                .find("pad_token_id: must be in [0, vocab_size = 100), got 100"),
            std::string::npos);
  EXPECT_NE(error_of("routing_group: GROUP_FIXED")
                .find("group_size: must be >= 1 when routing_group is GROUP_FIXED"),
            std::string::npos);
  EXPECT_NE(error_of("encoder_sparse_step: -1").find("encoder_sparse_step"), std::string::npos);
  EXPECT_NE(error_of("d_kv: 0").find("d_kv: must be >= 1"), std::string::npos);
  EXPECT_NE(error_of("eval_capacity_factor: 0").find("eval_capacity_factor: must be > 0"),
            std::string::npos);
  EXPECT_NE(error_of("num_experts: 4\nnum_selected_experts: 5")
                .find("num_selected_experts: must be in [1, num_experts = 4], got 5"),
            std::string::npos);
  EXPECT_NE(error_of("num_selected_experts: 0").find("num_selected_experts"), std::string::npos);
  EXPECT_NE(error_of("router_bias_update_rate: -0.1").find("router_bias_update_rate: must be >= 0"),
            std::string::npos);
  EXPECT_NE(error_of("routing: EXPERT_CHOICE\naux_loss_coef: 0")
                .find("routing: EXPERT_CHOICE lets each expert pick among a whole group's tokens"),
            std::string::npos);
  EXPECT_NE(error_of("routing: EXPERT_CHOICE\ndecoder_sparse_step: 0")
                .find("aux_loss_coef: must be 0 with routing EXPERT_CHOICE"),
            std::string::npos);
}

// Sizes no machine holds are refused at validation, naming the fields and the total; a
// size that validates but exceeds this machine's memory is refused before allocating.
TEST(Config, ImpossibleSizesAreNamed) {
  EXPECT_NE(error_of("num_experts: 1000000000").find("model size: the config describes"),
            std::string::npos);
  EXPECT_NE(error_of("num_experts: 1000000000").find("num_experts 1000000000"), std::string::npos);
  EXPECT_NE(error_of("d_model: 1099511627776").find("more than the 2^45"), std::string::npos);
  // Each product is formed in doubles: buckets x heads alone overflows int64 here.
  EXPECT_NE(error_of("num_heads: 8070450532247928832\nrelative_attention_num_buckets: 1024\n"
                     "relative_attention_max_distance: 2048")
                .find("model size"),
            std::string::npos);
  const ModelConfig huge_vocab = config_from_text("vocab_size: 2147483647");  // valid
  try {
    SwitchTransformer m(huge_vocab);
    FAIL() << "a 6.6 TB model was allocated";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kOutOfMemory);
    EXPECT_NE(std::string(e.what()).find("GiB of memory"), std::string::npos) << e.what();
  }
}

TEST(Config, SyntaxErrorsGiveLineAndColumn) {
  EXPECT_NE(error_of("d_model: 32\nno_such_field: 1").find("line 2"), std::string::npos);
  EXPECT_NE(error_of("activation: SWISH").find("SWISH"), std::string::npos);
  EXPECT_NE(error_of("d_model: \"big\"").find("line 1"), std::string::npos);
  // The error names the field it sits in, nested messages included.
  EXPECT_NE(error_of("d_model: 32\nd_ff: \"big\"").find("line 2, column 7 (field d_ff)"),
            std::string::npos)
      << error_of("d_model: 32\nd_ff: \"big\"");
  EXPECT_NE(error_of("activation: SWISH").find("(field activation)"), std::string::npos);
  // An error at the very end of the text (its column past the last character).
  EXPECT_NE(error_of("d_model: 32\nd_ff").find("line 2"), std::string::npos);
  try {
    train_config_from_text("learning_rate: 0.1\nmodel { d_model: 32 num_heads: x }");
    ADD_FAILURE() << "a bad nested value was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2, column 32 (field num_heads)"), std::string::npos)
        << e.what();
  }
}

TEST(Config, EveryPresetParsesAndValidates) {
  const std::vector<std::string> names = preset_names();
  for (const char* expected :
       {"tiny", "switch-base-8", "switch-base-16", "switch-base-32", "switch-base-64",
        "switch-base-128", "switch-base-256", "switch-large-128", "switch-xxl-128", "switch-c-2048",
        "paper-switch-base", "t5-base"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  for (const std::string& name : names) {
    const ModelConfig c = preset(name);
    EXPECT_EQ(c.name(), name);
  }
  const ModelConfig c = preset("switch-c-2048");
  EXPECT_EQ(c.num_experts(), 2048);
  EXPECT_EQ(c.num_heads(), 30);
  EXPECT_EQ(c.decoder_sparse_step(), 0);
  try {
    preset("switch-base-7");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kNotFound);
    EXPECT_NE(std::string(e.what()).find("switch-base-8"),
              std::string::npos);  // lists the known ones
  }
}

TEST(Config, TextRoundTripWritesEveryField) {
  const ModelConfig c = preset("tiny");
  const std::string text = config_to_text(c);
  EXPECT_NE(text.find("norm_epsilon: 1e-06"), std::string::npos);  // a default, written out
  const ModelConfig back = config_from_text(text);
  EXPECT_EQ(back.SerializeAsString(), config_from_text(config_to_text(back)).SerializeAsString());
  EXPECT_EQ(back.d_model(), c.d_model());
}

TEST(Config, SparsePlacement) {
  ModelConfig c =
      config_from_text("encoder_sparse_step: 3\ndecoder_sparse_step: 1\nnum_encoder_layers: 7");
  std::vector<int64_t> hf, t5x;
  for (int64_t i = 0; i < 7; ++i)
    if (is_sparse_block(c, Stack::kEncoder, i)) hf.push_back(i);
  c.set_sparse_placement(ModelConfig::PLACEMENT_T5X);
  for (int64_t i = 0; i < 7; ++i)
    if (is_sparse_block(c, Stack::kEncoder, i)) t5x.push_back(i);
  EXPECT_EQ(hf, std::vector<int64_t>({1, 4}));
  EXPECT_EQ(t5x, std::vector<int64_t>({2, 5}));
  for (int64_t i = 0; i < 7; ++i) EXPECT_TRUE(is_sparse_block(c, Stack::kDecoder, i));
  c.set_decoder_sparse_step(0);
  EXPECT_FALSE(is_sparse_block(c, Stack::kDecoder, 1));
}

TEST(Config, CapacityFormulas) {
  ModelConfig c = config_from_text(
      "num_experts: 4\ncapacity_mode: CAPACITY_FACTOR\ntrain_capacity_factor: 1.25\n"
      "eval_capacity_factor: 2.0\nmin_capacity: 4");
  EXPECT_EQ(expert_capacity(c, 64, true), 20);   // 1.25 * 64 / 4
  EXPECT_EQ(expert_capacity(c, 64, false), 32);  // 2.0 * 64 / 4
  EXPECT_EQ(expert_capacity(c, 8, true), 4);     // min_capacity
  c.set_min_capacity(0);
  c.set_train_capacity_factor(1.0);
  EXPECT_EQ(expert_capacity(c, 10, true), 2);  // 2.5 rounds half to even
  EXPECT_EQ(expert_capacity(c, 14, true), 4);  // 3.5 rounds half to even
  c.set_capacity_rounding(ModelConfig::ROUND_DOWN);
  EXPECT_EQ(expert_capacity(c, 14, true), 3);
  c.set_capacity_rounding(ModelConfig::ROUND_NEAREST);
  c.set_num_selected_experts(2);                // top-2: capacity per assignment
  EXPECT_EQ(expert_capacity(c, 64, true), 32);  // 1.0 * 64 * 2 / 4
  c.set_num_selected_experts(1);
  c.set_capacity_mode(ModelConfig::CAPACITY_FIXED);
  c.set_expert_capacity(64);
  EXPECT_EQ(expert_capacity(c, 512, false), 64);
  c.set_capacity_mode(ModelConfig::CAPACITY_DROPLESS);
  EXPECT_EQ(expert_capacity(c, 512, true), 512);
}

TEST(Config, RoutingGroups) {
  ModelConfig c;
  EXPECT_EQ(routing_group_size(c, 4, 16), 16);  // sequence
  c.set_routing_group(ModelConfig::GROUP_BATCH);
  EXPECT_EQ(routing_group_size(c, 4, 16), 64);
  c.set_routing_group(ModelConfig::GROUP_FIXED);
  c.set_group_size(32);
  EXPECT_EQ(routing_group_size(c, 4, 16), 32);
  c.set_group_size(24);
  try {
    routing_group_size(c, 4, 16);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("group_size: 24 does not divide the 64 tokens"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace sw
