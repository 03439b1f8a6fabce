// HF SwitchTransformers checkpoints: config.json semantics, export -> import identity (every
// weight byte and the forward), sharded indexes, HF's tied copies, and the refusals.
#include "core/io/hf_checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/data/byte_tokenizer.h"
#include "core/io/safetensors.h"
#include "core/tensor/error.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;

using sw::testing::error_of;

// google/switch-base-8's config.json, as published.
constexpr const char* kSwitchBase8 = R"({
  "_name_or_path": "google/switch-base-8", "architectures": ["SwitchTransformersForConditionalGeneration"],
  "d_ff": 3072, "d_kv": 64, "d_model": 768, "decoder_start_token_id": 0, "dense_act_fn": "relu",
  "dropout_rate": 0.1, "eos_token_id": 1, "expert_capacity": 64, "initializer_factor": 1.0,
  "is_encoder_decoder": true, "is_gated_act": false, "layer_norm_epsilon": 1e-06,
  "model_type": "switch_transformers", "num_decoder_layers": 12, "num_experts": 8,
  "num_heads": 12, "num_layers": 12, "num_sparse_decoder_layers": 6,
  "num_sparse_encoder_layers": 6, "pad_token_id": 0, "relative_attention_max_distance": 128,
  "relative_attention_num_buckets": 32, "router_aux_loss_coef": 0.001, "router_bias": false,
  "router_dtype": "float32", "router_ignore_padding_tokens": false, "router_jitter_noise": 0.01,
  "router_z_loss_coef": 0.001, "torch_dtype": "float32", "transformers_version": "4.24.0",
  "use_cache": true, "vocab_size": 32128})";

sw::ModelConfig small_hf_config() {
  sw::ModelConfig c = sw::config_from_hf_json(kSwitchBase8);
  c.set_vocab_size(256);
  c.set_d_model(32);
  c.set_d_ff(64);
  c.set_d_kv(8);
  c.set_num_heads(4);
  c.set_num_encoder_layers(4);
  c.set_num_decoder_layers(4);
  c.set_num_experts(4);
  c.set_expert_capacity(3);
  return c;
}

class HfCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("sw_hf_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(HfCheckpointTest, SwitchBase8ConfigHasHfSemantics) {
  const sw::ModelConfig c = sw::config_from_hf_json(kSwitchBase8);
  EXPECT_EQ(c.name(), "google/switch-base-8");
  EXPECT_EQ(c.d_ff(), 3072);
  EXPECT_EQ(c.encoder_sparse_step(), 2);
  EXPECT_TRUE(sw::is_sparse_block(c, sw::Stack::kEncoder, 1));
  EXPECT_FALSE(sw::is_sparse_block(c, sw::Stack::kEncoder, 0));
  EXPECT_EQ(c.capacity_mode(), sw::ModelConfig::CAPACITY_FIXED);
  EXPECT_EQ(c.expert_capacity(), 64);
  EXPECT_EQ(c.routing_group(), sw::ModelConfig::GROUP_SEQUENCE);
  EXPECT_EQ(c.aux_loss_mode(), sw::ModelConfig::AUX_HF_CONCAT_ARGMAX);
  EXPECT_TRUE(c.jitter_reaches_experts());
  EXPECT_EQ(c.init_scheme(), sw::ModelConfig::INIT_HF);
  EXPECT_DOUBLE_EQ(c.expert_dropout_rate(), 0.1);
  EXPECT_EQ(sw::count_parameters(c), sw::count_parameters(sw::preset("switch-base-8")));
  // Written back and read again: the same config.
  EXPECT_EQ(sw::config_to_text(sw::config_from_hf_json(sw::config_to_hf_json(c))),
            sw::config_to_text(c));
}

TEST_F(HfCheckpointTest, BadConfigsAreNamed) {
  EXPECT_NE(error_of([] { sw::config_from_hf_json("{not json"); }).find("not JSON"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { sw::config_from_hf_json(R"({"router_bias": true})"); }).find("router_bias"),
      std::string::npos);
  EXPECT_NE(
      error_of([] { sw::config_from_hf_json(R"({"dense_act_fn": "silu"})"); }).find("dense_act_fn"),
      std::string::npos);
  EXPECT_NE(error_of([] { sw::config_from_hf_json(R"({"model_type": "t5"})"); }).find("model_type"),
            std::string::npos);
  EXPECT_NE(
      error_of([] { sw::config_from_hf_json(R"({"num_experts": "eight"})"); }).find("num_experts"),
      std::string::npos);
  // Found by fuzzing: an integer field holding a float or an integer out of range (once
  // an undefined conversion) is named.
  EXPECT_NE(error_of([] {
              sw::config_from_hf_json(R"({"expert_capacity": 6.4e55})");
            }).find("expert_capacity must be an integer"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              sw::config_from_hf_json(R"({"d_model": 18446744073709551615})");
            }).find("d_model is out of range"),
            std::string::npos);
}

// HF turns "no sparse layers" into a step equal to the layer count, which still makes
// block 1 sparse: imports mirror it, and a dense stack cannot be exported.
TEST_F(HfCheckpointTest, HfsZeroSparseLayersQuirk) {
  const sw::ModelConfig c = sw::config_from_hf_json(
      R"({"num_layers": 4, "num_sparse_encoder_layers": 0, "num_decoder_layers": 1,
          "num_sparse_decoder_layers": 0})");
  EXPECT_TRUE(sw::is_sparse_block(c, sw::Stack::kEncoder, 1));
  EXPECT_FALSE(sw::is_sparse_block(c, sw::Stack::kEncoder, 0));
  EXPECT_FALSE(sw::is_sparse_block(c, sw::Stack::kEncoder, 2));
  EXPECT_TRUE(sw::is_sparse_block(c, sw::Stack::kDecoder, 0));  // step 1: every block
  // transformers follows the step keys when config.json has them: they win over the counts.
  const sw::ModelConfig stepped = sw::config_from_hf_json(
      R"({"num_layers": 4, "num_sparse_encoder_layers": 2, "encoder_sparse_step": 1,
          "num_decoder_layers": 4, "num_sparse_decoder_layers": 2, "decoder_sparse_step": 0})");
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_TRUE(sw::is_sparse_block(stepped, sw::Stack::kEncoder, i)) << i;
    EXPECT_FALSE(sw::is_sparse_block(stepped, sw::Stack::kDecoder, i)) << i;
  }
  // A dense stack exports as step 0 and comes back dense.
  sw::ModelConfig dense_decoder = small_hf_config();
  dense_decoder.set_decoder_sparse_step(0);
  const sw::SwitchTransformer model(dense_decoder, 1);
  sw::export_hf(model, dir_.string());
  const sw::SwitchTransformer back =
      sw::import_hf((dir_ / "config.json").string(), (dir_ / "model.safetensors").string());
  EXPECT_EQ(back.config().decoder_sparse_step(), 0);
  EXPECT_EQ(back.parameters().entries().size(), model.parameters().entries().size());
}

// transformers adds a stack's router losses only when its sparse step is above 1: with every
// block sparse the HF modes report none for that stack, while AUX_PER_LAYER counts them.
TEST_F(HfCheckpointTest, HfModesSkipTheLossesOfAllSparseStacks) {
  sw::ModelConfig c = small_hf_config();
  c.set_vocab_size(384);  // byte tokens
  c.set_encoder_sparse_step(1);
  c.set_decoder_sparse_step(1);
  const sw::Batch b =
      sw::make_continuation_batch("every block of both stacks is sparse", 2, 8, 4, c);
  for (const auto mode : {sw::ModelConfig::AUX_HF_CONCAT, sw::ModelConfig::AUX_HF_CONCAT_ARGMAX}) {
    c.set_aux_loss_mode(mode);
    const sw::ForwardOutput out = sw::SwitchTransformer(c, 3).forward(b);
    EXPECT_FALSE(out.routing.empty());
    EXPECT_EQ(out.aux_loss, 0.0) << mode;
    EXPECT_EQ(out.z_loss, 0.0) << mode;
  }
  c.set_aux_loss_mode(sw::ModelConfig::AUX_PER_LAYER);
  const sw::ForwardOutput per_layer = sw::SwitchTransformer(c, 3).forward(b);
  EXPECT_GT(per_layer.aux_loss, 0.0);
  EXPECT_GT(per_layer.z_loss, 0.0);
}

// HF's "gelu" is the exact (erf) GELU, "gelu_new" the tanh one: both import and export
// under their own names.
TEST_F(HfCheckpointTest, BothGelusKeepTheirNames) {
  for (const auto& [name, activation] :
       {std::pair<std::string, sw::ModelConfig::Activation>{"gelu", sw::ModelConfig::GELU_EXACT},
        {"gelu_new", sw::ModelConfig::GELU},
        {"relu", sw::ModelConfig::RELU}}) {
    const sw::ModelConfig c = sw::config_from_hf_json(R"({"dense_act_fn": ")" + name + "\"}");
    EXPECT_EQ(c.activation(), activation) << name;
    EXPECT_NE(sw::config_to_hf_json(c).find("\"dense_act_fn\": \"" + name + "\""),
              std::string::npos)
        << name;
  }
}

// A config whose sparse layout does not match the weights is refused in those words, not
// by the first missing tensor's name.
TEST_F(HfCheckpointTest, LayoutAndWeightsThatDisagreeAreNamed) {
  const sw::SwitchTransformer model(small_hf_config(), 2);
  sw::export_hf(model, dir_.string());
  const fs::path config = dir_ / "config.json";
  nlohmann::json j = nlohmann::json::parse(std::ifstream(config));
  j["encoder_sparse_step"] = 1;  // every encoder block sparse; the weights have fewer
  std::ofstream(config, std::ios::trunc) << j.dump();
  const std::string e =
      error_of([&] { sw::import_hf(config.string(), (dir_ / "model.safetensors").string()); });
  EXPECT_NE(e.find("the config's sparse layout and the weights disagree: encoder_sparse_step 1 "
                   "makes encoder block 0 sparse"),
            std::string::npos)
      << e;
}

// transformers' Switch layer is top-1: a top-2 model is refused by name unless the caller
// accepts the change.
TEST_F(HfCheckpointTest, ExportRefusesTopTwoRoutingByName) {
  sw::ModelConfig c = small_hf_config();
  c.set_num_selected_experts(2);
  const sw::SwitchTransformer model(c, 5);
  EXPECT_NE(error_of([&] { sw::export_hf(model, dir_.string()); })
                .find("num_selected_experts 2 (transformers' Switch layer sends each token to one "
                      "expert)"),
            std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "config.json"));
  EXPECT_NO_THROW(sw::export_hf(model, dir_.string(), /*allow_routing_change=*/true));
}

TEST_F(HfCheckpointTest, ExportThenImportIsIdentical) {
  const sw::SwitchTransformer model(small_hf_config(), 5);
  sw::export_hf(model, dir_.string());
  const sw::SwitchTransformer back =
      sw::import_hf((dir_ / "config.json").string(), (dir_ / "model.safetensors").string());
  const auto& a = model.parameters().entries();
  const auto& b = back.parameters().entries();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(0, std::memcmp(a[i].tensor.raw(), b[i].tensor.raw(), a[i].tensor.nbytes()))
        << a[i].name;
  }
  sw::Batch batch;
  batch.input_ids = sw::Tensor::from_vector<int32_t>({5, 9, 17, 1, 33, 8, 2, 1}, {2, 4});
  batch.decoder_input_ids = sw::Tensor::from_vector<int32_t>({0, 5, 9, 0, 33, 8}, {2, 3});
  const sw::Tensor la = model.forward(batch).logits, lb = back.forward(batch).logits;
  EXPECT_EQ(0, std::memcmp(la.raw(), lb.raw(), la.nbytes()));
  // A directory works as the weights path; so does the same model sharded in two files.
  EXPECT_NO_THROW(sw::import_hf((dir_ / "config.json").string(), dir_.string()));
  const sw::SafetensorsFile whole = sw::read_safetensors((dir_ / "model.safetensors").string());
  std::vector<std::pair<std::string, sw::Tensor>> first, second;
  std::string index = R"({"metadata": {}, "weight_map": {)";
  bool comma = false;
  for (const auto& [name, t] : whole.tensors) {
    const bool in_first = name.rfind("encoder", 0) == 0;
    (in_first ? first : second).push_back({name, t});
    index += std::string(comma ? ", " : "") + "\"" + name + "\": \"" +
             (in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors") +
             "\"";
    comma = true;
  }
  index += "}}";
  const fs::path sharded = dir_ / "sharded";
  fs::create_directories(sharded);
  sw::write_safetensors((sharded / "model-00001-of-00002.safetensors").string(), first);
  sw::write_safetensors((sharded / "model-00002-of-00002.safetensors").string(), second);
  std::ofstream(sharded / "model.safetensors.index.json") << index;
  const sw::SwitchTransformer from_shards =
      sw::import_hf((dir_ / "config.json").string(), sharded.string());
  const sw::Tensor ls = from_shards.forward(batch).logits;
  EXPECT_EQ(0, std::memcmp(la.raw(), ls.raw(), la.nbytes()));
}

// An untied HF config is transformers 5's layout: each stack embeds with its own table.
// Three different tables survive export and import (a table read into the wrong place
// would change the logits); a checkpoint holding only `shared` gives it to both stacks;
// our one-input-table untied model exports the tables transformers 5 reads.
TEST_F(HfCheckpointTest, UntiedModelsHaveAnInputTablePerStack) {
  sw::ModelConfig c = small_hf_config();
  c.set_tie_word_embeddings(false);
  c.set_separate_input_embeddings(true);
  const sw::SwitchTransformer model(c, 8);
  sw::export_hf(model, dir_.string());
  const std::string config = (dir_ / "config.json").string();
  const sw::SafetensorsFile written = sw::read_safetensors((dir_ / "model.safetensors").string());
  for (const char* n : {"shared.weight", "encoder.embed_tokens.weight",
                        "decoder.embed_tokens.weight", "lm_head.weight"})
    EXPECT_TRUE(written.tensors.count(n)) << n;
  const sw::SwitchTransformer back = sw::import_hf(config, (dir_ / "model.safetensors").string());
  EXPECT_TRUE(back.config().separate_input_embeddings());
  sw::Batch batch;
  batch.input_ids = sw::Tensor::from_vector<int32_t>({5, 9, 17, 1, 33, 8, 2, 1}, {2, 4});
  batch.decoder_input_ids = sw::Tensor::from_vector<int32_t>({0, 5, 9, 0, 33, 8}, {2, 3});
  const sw::Tensor la = model.forward(batch).logits, lb = back.forward(batch).logits;
  EXPECT_EQ(0, std::memcmp(la.raw(), lb.raw(), la.nbytes()));
  // Swapping the encoder's and decoder's tables changes the logits: each is used.
  std::vector<std::pair<std::string, sw::Tensor>> swapped(written.tensors.begin(),
                                                          written.tensors.end());
  for (auto& [name, t] : swapped) {
    if (name == "encoder.embed_tokens.weight")
      t = written.tensors.at("decoder.embed_tokens.weight");
    else if (name == "decoder.embed_tokens.weight")
      t = written.tensors.at("encoder.embed_tokens.weight");
  }
  const std::string weights = (dir_ / "w.safetensors").string();
  sw::write_safetensors(weights, swapped);
  const sw::Tensor ls = sw::import_hf(config, weights).forward(batch).logits;
  EXPECT_NE(0, std::memcmp(la.raw(), ls.raw(), la.nbytes()));
  // Only `shared` saved (as transformers 4 kept the stacks' tables): both stacks use it.
  std::vector<std::pair<std::string, sw::Tensor>> only_shared;
  for (const auto& [name, t] : written.tensors)
    if (name.find("embed_tokens") == std::string::npos) only_shared.push_back({name, t});
  sw::write_safetensors(weights, only_shared);
  const sw::SwitchTransformer from_shared = sw::import_hf(config, weights);
  const sw::Tensor shared = written.tensors.at("shared.weight");
  for (const char* n : {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"})
    EXPECT_EQ(0, std::memcmp(from_shared.parameters().get(n).raw(), shared.raw(), shared.nbytes()))
        << n;
  // Neither the stack's table nor `shared`: named.
  only_shared.erase(std::find_if(only_shared.begin(), only_shared.end(),
                                 [](const auto& t) { return t.first == "shared.weight"; }));
  sw::write_safetensors(weights, only_shared);
  EXPECT_NE(error_of([&] {
              sw::import_hf(config, weights);
            }).find("neither encoder.embed_tokens.weight nor shared.weight"),
            std::string::npos);
  // A model with one input table and its own lm_head writes the stacks' tables as copies.
  c.set_separate_input_embeddings(false);
  const sw::SwitchTransformer one_table(c, 9);
  const fs::path out = dir_ / "one_table";
  sw::export_hf(one_table, out.string());
  const sw::SafetensorsFile copies = sw::read_safetensors((out / "model.safetensors").string());
  const sw::Tensor table = one_table.parameters().get("shared.weight");
  for (const char* n : {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"})
    EXPECT_EQ(0, std::memcmp(copies.tensors.at(n).raw(), table.raw(), table.nbytes())) << n;
  const sw::Tensor lo = one_table.forward(batch).logits;
  const sw::Tensor li =
      sw::import_hf((out / "config.json").string(), out.string()).forward(batch).logits;
  EXPECT_EQ(0, std::memcmp(lo.raw(), li.raw(), lo.nbytes()));
  // Tied and separate contradict each other.
  c.set_tie_word_embeddings(true);
  c.set_separate_input_embeddings(true);
  EXPECT_NE(error_of([&] { sw::validate(c); }).find("separate_input_embeddings: needs "),
            std::string::npos);
}

TEST_F(HfCheckpointTest, TiedCopiesMissingWeightsAndBinFilesAreHandled) {
  const sw::SwitchTransformer model(small_hf_config(), 6);
  sw::export_hf(model, dir_.string());
  sw::SafetensorsFile f = sw::read_safetensors((dir_ / "model.safetensors").string());
  std::vector<std::pair<std::string, sw::Tensor>> tensors(f.tensors.begin(), f.tensors.end());
  const std::string config = (dir_ / "config.json").string(),
                    weights = (dir_ / "w.safetensors").string();
  // HF's tied copies, equal to shared.weight: accepted.
  tensors.push_back({"encoder.embed_tokens.weight", f.tensors.at("shared.weight")});
  tensors.push_back({"lm_head.weight", f.tensors.at("shared.weight")});
  sw::write_safetensors(weights, tensors);
  EXPECT_NO_THROW(sw::import_hf(config, weights));
  // A copy that differs: refused.
  tensors.back().second = sw::Tensor::zeros(f.tensors.at("shared.weight").shape(), sw::DType::f32);
  sw::write_safetensors(weights, tensors);
  EXPECT_NE(error_of([&] { sw::import_hf(config, weights); }).find("lm_head.weight differs"),
            std::string::npos);
  // A missing expert weight is named.
  tensors.pop_back();
  const std::string gone = "decoder.block.3.layer.2.mlp.experts.expert_2.wo.weight";
  tensors.erase(
      std::find_if(tensors.begin(), tensors.end(), [&](const auto& t) { return t.first == gone; }));
  sw::write_safetensors(weights, tensors);
  EXPECT_NE(error_of([&] { sw::import_hf(config, weights); }).find(gone), std::string::npos);
  // A name given twice would leave orphaned bytes: refused.
  EXPECT_NE(error_of([&] {
              sw::write_safetensors(weights, {{"a", tensors[0].second}, {"a", tensors[0].second}});
            }).find("given twice"),
            std::string::npos);
  // PyTorch pickles are refused with the way out.
  std::ofstream(dir_ / "pytorch_model.bin") << "pickle";
  EXPECT_NE(error_of([&] {
              sw::import_hf(config, (dir_ / "pytorch_model.bin").string());
            }).find("convert it to safetensors"),
            std::string::npos);
}

}  // namespace
