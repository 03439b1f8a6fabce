#include "core/io/hf_checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

#include "core/io/checkpoint.h"
#include "core/io/safetensors.h"
#include "core/tensor/error.h"

namespace sw {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  SW_CHECK(in, Status::kNotFound, "HF import: cannot read ", path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

template <typename T>
T field(const json& j, const char* name, T fallback) {
  if (!j.contains(name) || j.at(name).is_null()) return fallback;
  const json& v = j.at(name);
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // An integer field must hold an integer the type can represent (a float such as 1e55
    // or a huge unsigned value would not convert).
    SW_CHECK_ARG(v.is_number_integer(), "HF config: ", name, " must be an integer, got ", v.dump());
    SW_CHECK_ARG(v.is_number_unsigned()
                     ? v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                     : v.get<int64_t>() >= std::numeric_limits<T>::min() &&
                           v.get<int64_t>() <= std::numeric_limits<T>::max(),
                 "HF config: ", name, " is out of range: ", v.dump());
  }
  try {
    return v.get<T>();
  } catch (const json::exception& e) {
    throw Error(Status::kInvalidArgument,
                std::string("HF config: ") + name + " has the wrong type: " + e.what());
  }
}

// dense_act_fn for an ungated activation (GATED_GELU is refused before this is asked).
const char* hf_activation_name(ModelConfig::Activation a) {
  switch (a) {
    case ModelConfig::RELU:
      return "relu";
    case ModelConfig::GELU_EXACT:
      return "gelu";
    default:
      return "gelu_new";
  }
}

// A stack's sparse step as transformers builds it: the `*_sparse_step` key when config.json
// has it (transformers sets it over the one its constructor derives; 0 = a dense stack),
// else derived from the count of sparse layers. With a count of 0 the derived step is the
// layer count, which (HF's "HACK") still makes block 1 sparse; the weights HF saves then
// include that block's experts.
int64_t sparse_step(const json& j, const char* step_key, int64_t layers, const char* count_key) {
  if (j.contains(step_key) && !j.at(step_key).is_null()) {
    const int64_t step = field<int64_t>(j, step_key, 0);
    SW_CHECK_ARG(step >= 0, "HF config: ", step_key, " must be >= 0 (0: dense), got ", step);
    return step;
  }
  const int64_t sparse_layers = field<int64_t>(j, count_key, 3);
  SW_CHECK_ARG(sparse_layers >= 0 && sparse_layers <= layers, "HF config: ", count_key, " is ",
               sparse_layers, " for ", layers, " layers");
  return sparse_layers > 0 ? layers / sparse_layers : layers;
}

// The sparse blocks of the config against the weights: a router weight for every sparse
// block and none for a dense one, or an error saying which block and which setting.
void check_sparse_layout(const ModelConfig& c,
                         const std::vector<std::pair<std::string, Tensor>>& weights) {
  std::map<std::string, bool> has;
  for (const auto& w : weights) has[w.first] = true;
  for (Stack s : {Stack::kEncoder, Stack::kDecoder}) {
    const int ffn_layer = s == Stack::kEncoder ? 1 : 2;
    const int64_t step = s == Stack::kEncoder ? c.encoder_sparse_step() : c.decoder_sparse_step();
    for (int64_t i = 0; i < num_layers(c, s); ++i) {
      const std::string router = std::string(stack_name(s)) + ".block." + std::to_string(i) +
                                 ".layer." + std::to_string(ffn_layer) +
                                 ".mlp.router.classifier.weight";
      const bool sparse = is_sparse_block(c, s, i);
      SW_CHECK(sparse == (has.count(router) > 0), Status::kInvalidArgument,
               "HF import: the config's sparse layout and the weights disagree: ", stack_name(s),
               "_sparse_step ", step, " makes ", stack_name(s), " block ", i,
               sparse ? " sparse, but the weights have no " : " dense, but the weights have ",
               router);
    }
  }
}

}  // namespace

ModelConfig config_from_hf_json(const std::string& json_text) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    throw Error(Status::kInvalidArgument, std::string("HF config: not JSON: ") + e.what());
  }
  SW_CHECK_ARG(j.is_object(), "HF config: not a JSON object");
  const std::string type = field<std::string>(j, "model_type", "switch_transformers");
  SW_CHECK_ARG(type == "switch_transformers", "HF config: model_type is \"", type,
               "\", expected \"switch_transformers\"");
  SW_CHECK_ARG(!field<bool>(j, "router_bias", false),
               "HF config: router_bias true is not supported (the released checkpoints have none)");
  SW_CHECK_ARG(!field<bool>(j, "router_ignore_padding_tokens", false),
               "HF config: router_ignore_padding_tokens true is not supported");
  ModelConfig c;
  c.set_name(field<std::string>(j, "_name_or_path", "hf-switch-transformers"));
  c.set_vocab_size(field<int64_t>(j, "vocab_size", 32128));
  c.set_d_model(field<int64_t>(j, "d_model", 768));
  c.set_d_kv(field<int64_t>(j, "d_kv", 64));
  c.set_d_ff(field<int64_t>(j, "d_ff", 2048));
  c.set_num_heads(field<int64_t>(j, "num_heads", 12));
  const int64_t encoder_layers = field<int64_t>(j, "num_layers", 12);
  const int64_t decoder_layers = field<int64_t>(j, "num_decoder_layers", encoder_layers);
  c.set_num_encoder_layers(encoder_layers);
  c.set_num_decoder_layers(decoder_layers);
  c.set_encoder_sparse_step(
      sparse_step(j, "encoder_sparse_step", encoder_layers, "num_sparse_encoder_layers"));
  c.set_decoder_sparse_step(
      sparse_step(j, "decoder_sparse_step", decoder_layers, "num_sparse_decoder_layers"));
  c.set_num_experts(field<int64_t>(j, "num_experts", 8));
  const std::string act = field<std::string>(j, "dense_act_fn", "relu");
  if (act == "relu") {
    c.set_activation(ModelConfig::RELU);
  } else if (act == "gelu_new" || act == "gelu_pytorch_tanh") {
    c.set_activation(ModelConfig::GELU);
  } else if (act == "gelu") {
    c.set_activation(ModelConfig::GELU_EXACT);
  } else {
    throw Error(Status::kInvalidArgument,
                "HF config: dense_act_fn \"" + act + "\" is not supported (relu, gelu, gelu_new)");
  }
  c.set_sparse_placement(ModelConfig::PLACEMENT_HF);
  c.set_router_jitter_eps(field<double>(j, "router_jitter_noise", 0.01));
  const std::string router_dtype = field<std::string>(j, "router_dtype", "float32");
  if (router_dtype == "bfloat16") {
    c.set_router_dtype(ModelConfig::ROUTER_BFLOAT16);
  } else {
    SW_CHECK_ARG(router_dtype == "float32", "HF config: router_dtype \"", router_dtype,
                 "\" is not supported (float32, bfloat16)");
  }
  c.set_jitter_reaches_experts(true);  // HF multiplies the hidden states in place
  c.set_capacity_mode(ModelConfig::CAPACITY_FIXED);
  c.set_expert_capacity(field<int64_t>(j, "expert_capacity", 64));
  c.set_routing_group(ModelConfig::GROUP_SEQUENCE);
  // The load-balancing loss as transformers 5 computes it (4.x counted a dropped token as
  // expert 0: AUX_HF_CONCAT).
  c.set_aux_loss_mode(ModelConfig::AUX_HF_CONCAT_ARGMAX);
  c.set_aux_loss_coef(field<double>(j, "router_aux_loss_coef", 0.001));
  c.set_z_loss_coef(field<double>(j, "router_z_loss_coef", 0.001));
  c.set_dropout_rate(field<double>(j, "dropout_rate", 0.1));
  c.set_expert_dropout_rate(c.dropout_rate());  // HF's experts use the same dropout
  c.set_init_scheme(ModelConfig::INIT_HF);
  // Only the standard deviations of fresh weights depend on it; the checkpoints use 1.
  SW_CHECK_ARG(field<double>(j, "initializer_factor", 1.0) == 1.0,
               "HF config: initializer_factor other than 1 is not supported");
  c.set_tie_word_embeddings(field<bool>(j, "tie_word_embeddings", true));
  // transformers 5 unties all three tables of an untied model: each stack embeds with its
  // own embed_tokens (and `shared` goes unused).
  c.set_separate_input_embeddings(!c.tie_word_embeddings());
  c.set_relative_attention_num_buckets(field<int64_t>(j, "relative_attention_num_buckets", 32));
  c.set_relative_attention_max_distance(field<int64_t>(j, "relative_attention_max_distance", 128));
  c.set_norm_epsilon(field<double>(j, "layer_norm_epsilon", 1e-6));
  c.set_pad_token_id(field<int64_t>(j, "pad_token_id", 0));
  c.set_eos_token_id(field<int64_t>(j, "eos_token_id", 1));
  c.set_decoder_start_token_id(field<int64_t>(j, "decoder_start_token_id", 0));
  validate(c);
  return c;
}

std::string config_to_hf_json(const ModelConfig& c) {
  auto sparse_layers = [&](Stack s) {
    int64_t n = 0;
    for (int64_t i = 0; i < num_layers(c, s); ++i) n += is_sparse_block(c, s, i);
    return n;
  };
  SW_CHECK(c.activation() != ModelConfig::GATED_GELU, Status::kUnsupported,
           "HF export: the HF SwitchTransformers model has no gated experts");
  const json j = {{"architectures", {"SwitchTransformersForConditionalGeneration"}},
                  {"model_type", "switch_transformers"},
                  {"_name_or_path", c.name()},
                  {"vocab_size", c.vocab_size()},
                  {"d_model", c.d_model()},
                  {"d_kv", c.d_kv()},
                  {"d_ff", c.d_ff()},
                  {"num_heads", c.num_heads()},
                  {"num_layers", c.num_encoder_layers()},
                  {"num_decoder_layers", c.num_decoder_layers()},
                  {"num_sparse_encoder_layers", sparse_layers(Stack::kEncoder)},
                  {"num_sparse_decoder_layers", sparse_layers(Stack::kDecoder)},
                  {"encoder_sparse_step", c.encoder_sparse_step()},
                  {"decoder_sparse_step", c.decoder_sparse_step()},
                  {"num_experts", c.num_experts()},
                  {"expert_capacity", c.expert_capacity()},
                  {"router_bias", false},
                  {"router_jitter_noise", c.router_jitter_eps()},
                  // Ours applies to bf16 training only; transformers would cast its router to it at
                  // inference, which libswitch's f32 router does not.
                  {"router_dtype", "float32"},
                  {"router_ignore_padding_tokens", false},
                  {"router_aux_loss_coef", c.aux_loss_coef()},
                  {"router_z_loss_coef", c.z_loss_coef()},
                  {"dense_act_fn", hf_activation_name(c.activation())},
                  {"dropout_rate", c.dropout_rate()},
                  {"layer_norm_epsilon", c.norm_epsilon()},
                  {"initializer_factor", 1.0},
                  {"relative_attention_num_buckets", c.relative_attention_num_buckets()},
                  {"relative_attention_max_distance", c.relative_attention_max_distance()},
                  {"tie_word_embeddings", c.tie_word_embeddings()},
                  {"is_encoder_decoder", true},
                  {"pad_token_id", c.pad_token_id()},
                  {"eos_token_id", c.eos_token_id()},
                  {"decoder_start_token_id", c.decoder_start_token_id()}};
  return j.dump(2) + "\n";
}

std::vector<std::pair<std::string, Tensor>> read_hf_weights(const std::string& path) {
  fs::path p(path);
  if (fs::is_directory(p)) {
    if (fs::exists(p / "model.safetensors.index.json"))
      p /= "model.safetensors.index.json";
    else if (fs::exists(p / "model.safetensors"))
      p /= "model.safetensors";
    else if (fs::exists(p / "pytorch_model.bin"))
      throw Error(Status::kUnsupported,
                  "HF import: " + path +
                      " holds pytorch_model.bin; convert it to safetensors first (e.g. "
                      "model.save_pretrained(dir, safe_serialization=True))");
    else
      throw Error(Status::kNotFound,
                  "HF import: no model.safetensors or "
                  "model.safetensors.index.json in " +
                      path);
  }
  const std::string name = p.filename().string();
  SW_CHECK(name.size() < 4 || name.substr(name.size() - 4) != ".bin", Status::kUnsupported,
           "HF import: ", path,
           " is a PyTorch .bin; convert it to safetensors first (e.g. "
           "model.save_pretrained(dir, safe_serialization=True))");
  std::vector<std::pair<std::string, Tensor>> out;
  if (name.size() > 5 && name.substr(name.size() - 5) == ".json") {
    json index;
    try {
      index = json::parse(read_text(p));
    } catch (const json::exception& e) {
      throw Error(Status::kCorrupt, "HF import: " + p.string() + " is not JSON: " + e.what());
    }
    SW_CHECK(index.contains("weight_map") && index["weight_map"].is_object(), Status::kCorrupt,
             "HF import: ", p.string(), " has no weight_map");
    std::map<std::string, std::vector<std::string>> by_file;
    for (const auto& [tensor, file] : index["weight_map"].items()) {
      SW_CHECK(file.is_string(), Status::kCorrupt, "HF import: ", p.string(), ": the file of ",
               tensor, " is not a string");
      by_file[file.get<std::string>()].push_back(tensor);
    }
    for (const auto& [file, names] : by_file) {
      SafetensorsFile f = read_safetensors((p.parent_path() / file).string());
      for (const std::string& n : names) {
        SW_CHECK(f.tensors.count(n), Status::kCorrupt, "HF import: ", file, " lacks ", n,
                 " (listed in ", p.filename().string(), ")");
        out.push_back({n, f.tensors.at(n)});
      }
    }
    return out;
  }
  SafetensorsFile f = read_safetensors(p.string());
  for (auto& [n, t] : f.tensors) out.push_back({n, t});
  return out;
}

SwitchTransformer import_hf(const std::string& config_json_path, const std::string& weights_path,
                            const ModelConfig& overrides) {
  ModelConfig config = config_from_hf_json(read_text(config_json_path));
  config.MergeFrom(overrides);  // only the fields set in overrides
  validate(config);
  std::vector<std::pair<std::string, Tensor>> weights = read_hf_weights(weights_path);
  check_sparse_layout(config, weights);
  SwitchTransformer model(config, 0);
  std::map<std::string, Tensor> by_name;
  for (auto& [n, t] : weights) by_name[n] = t.dtype() == DType::f32 ? t : t.to(DType::f32);
  const std::string shared_name = "shared.weight";
  const auto shared = by_name.find(shared_name);
  if (config.separate_input_embeddings()) {
    // Each stack's own table; a checkpoint that saved only `shared` (transformers 4 kept
    // the stacks' tables as that one tensor) gives it to both. `shared` is then unused.
    for (const char* n : {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}) {
      if (by_name.count(n)) continue;
      SW_CHECK(shared != by_name.end(), Status::kInvalidArgument, "HF import: neither ", n,
               " nor shared.weight is in the weights");
      by_name[n] = shared->second;
    }
    by_name.erase(shared_name);
  }
  // HF's tied copies of the shared embedding: checked equal, then dropped.
  std::vector<std::string> tied;
  if (!config.separate_input_embeddings())
    tied = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"};
  if (config.tie_word_embeddings()) tied.push_back("lm_head.weight");
  for (const std::string& n : tied) {
    const auto it = by_name.find(n);
    if (it == by_name.end()) continue;
    const auto table = by_name.find(shared_name);
    if (table == by_name.end()) {  // only the copy was saved
      by_name[shared_name] = it->second;
    } else {
      SW_CHECK(it->second.shape() == table->second.shape() &&
                   std::equal(static_cast<const char*>(it->second.raw()),
                              static_cast<const char*>(it->second.raw()) + it->second.nbytes(),
                              static_cast<const char*>(table->second.raw())),
               Status::kInvalidArgument, "HF import: ", n, " differs from shared.weight, but ",
               config.tie_word_embeddings()
                   ? "the config ties them"
                   : "separate_input_embeddings is false (one input table for both stacks)");
    }
    by_name.erase(n);
  }
  std::vector<std::pair<std::string, Tensor>> saved(by_name.begin(), by_name.end());
  std::vector<std::pair<std::string, Tensor>> targets;
  for (const auto& e : model.parameters().entries()) targets.push_back({e.name, e.tensor});
  restore_tensors(saved, targets, true, "HF weight");
  return model;
}

std::string hf_routing_difference(const ModelConfig& c) {
  if (c.router_bias_update_rate() != 0)
    return "router_bias_update_rate " + std::to_string(c.router_bias_update_rate()) +
           " (transformers' router has no balancing bias)";
  if (c.routing() != ModelConfig::TOKENS_CHOOSE)
    return "routing " + ModelConfig::Routing_Name(c.routing()) +
           " (transformers' Switch layer lets each token choose its expert)";
  if (c.num_selected_experts() != 1)
    return "num_selected_experts " + std::to_string(c.num_selected_experts()) +
           " (transformers' Switch layer sends each token to one expert)";
  if (c.capacity_mode() != ModelConfig::CAPACITY_FIXED)
    return "capacity_mode " + ModelConfig::CapacityMode_Name(c.capacity_mode()) +
           " (HF keeps a fixed expert_capacity of " + std::to_string(c.expert_capacity()) +
           " tokens per expert and sequence)";
  if (c.routing_group() != ModelConfig::GROUP_SEQUENCE)
    return "routing_group " + ModelConfig::RoutingGroup_Name(c.routing_group()) +
           " (HF routes each sequence as its own group)";
  return "";
}

void export_hf(const SwitchTransformer& model, const std::string& dir, bool allow_routing_change) {
  const std::string difference = hf_routing_difference(model.config());
  SW_CHECK(allow_routing_change || difference.empty(), Status::kUnsupported,
           "HF export: transformers would route this model differently: ", difference,
           ", so it would keep other tokens and its logits would differ; export with "
           "allow_routing_change (switch export-hf --allow-routing-change) to write it anyway");
  std::error_code ec;
  fs::create_directories(dir, ec);
  SW_CHECK(!ec, Status::kIo, "HF export: cannot create ", dir, ": ", ec.message());
  const std::string config = config_to_hf_json(model.config());
  // HF places sparse blocks by a step per stack (block i when i % step == 1, every block at
  // step 1, none at 0); refuse a placement it would not rebuild (T5X's placement).
  const ModelConfig as_hf = config_from_hf_json(config);
  for (Stack s : {Stack::kEncoder, Stack::kDecoder})
    for (int64_t i = 0; i < num_layers(as_hf, s); ++i)
      SW_CHECK(is_sparse_block(as_hf, s, i) == is_sparse_block(model.config(), s, i),
               Status::kUnsupported, "HF export: HF would make ", stack_name(s), " block ", i,
               is_sparse_block(as_hf, s, i) ? " sparse" : " dense",
               "; this model's sparse blocks cannot be written as an HF config");
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& e : model.parameters().entries())
    tensors.push_back(
        {e.name, e.tensor.dtype() == DType::f32 ? e.tensor : e.tensor.to(DType::f32)});
  // transformers 5 reads an untied model's input tables from each stack's embed_tokens and
  // keeps a `shared` it does not use: write what it looks for.
  const ModelConfig& c = model.config();
  const auto table = [&](const std::string& name) {
    const auto it = std::find_if(tensors.begin(), tensors.end(),
                                 [&](const auto& named) { return named.first == name; });
    SW_CHECK(it != tensors.end(), Status::kInternal, "HF export: no ", name);
    return it->second;
  };
  if (!c.tie_word_embeddings() && !c.separate_input_embeddings()) {
    const Tensor shared = table("shared.weight");
    tensors.push_back({"encoder.embed_tokens.weight", shared});
    tensors.push_back({"decoder.embed_tokens.weight", shared});
  } else if (c.separate_input_embeddings()) {
    tensors.push_back({"shared.weight", table("encoder.embed_tokens.weight")});  // unused by HF
  }
  write_safetensors((fs::path(dir) / "model.safetensors").string(), tensors, {{"format", "pt"}});
  // config.json last, atomically: a directory with it is complete.
  const fs::path config_path = fs::path(dir) / "config.json",
                 temporary = config_path.string() + ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << config;
    out.close();
    SW_CHECK(out, Status::kIo, "HF export: cannot write ", temporary.string());
  }
  fs::rename(temporary, config_path);
}

}  // namespace sw
