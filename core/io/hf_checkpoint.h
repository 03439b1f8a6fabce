// HuggingFace SwitchTransformers checkpoints (the format of google/switch-base-8 ...
// switch-c-2048): config.json and safetensors weights, in and out. Parameter names are
// the HF names already, so weights map one to one; the config maps to a ModelConfig with
// HF's semantics: a fixed expert_capacity per sequence, HF placement of the sparse blocks,
// the aux loss over each stack's concatenated layers, jitter that reaches the experts,
// HF initialisation.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/model/switch_transformer.h"

namespace sw {

// config.json text → ModelConfig. Unsupported HF settings (router_bias, padding tokens
// ignored by the router, an activation other than relu/gelu) are errors naming the field.
// The sparse blocks follow `encoder_sparse_step` / `decoder_sparse_step` when present (as
// transformers does; 0 = a dense stack), else the step derived from
// num_sparse_*_layers (a count of 0 gives HF's "HACK" step, the layer count, which still
// makes block 1 sparse). Exports write both.
ModelConfig config_from_hf_json(const std::string& json_text);
std::string config_to_hf_json(const ModelConfig& config);

// Weights from a .safetensors file, a sharded model.safetensors.index.json, or a directory
// holding either; a PyTorch .bin is an error saying to convert it. Names as in the files.
std::vector<std::pair<std::string, Tensor>> read_hf_weights(const std::string& path);

// A model from config.json and its weights (strict: every parameter present with its shape;
// HF's tied copies — encoder/decoder embed_tokens and lm_head when tied — must equal
// shared.weight and are otherwise ignored). An untied config (tie_word_embeddings false)
// gives each stack its own input table, as transformers 5 does
// (separate_input_embeddings): encoder/decoder embed_tokens, or shared.weight for one
// missing; shared.weight is then unused. Converted to f32 on the CPU. The fields set in
// `overrides` replace the HF config's (e.g. aux_loss_mode AUX_PER_LAYER to train the model,
// or a capacity factor); one that changes a parameter's shape fails the restore naming it.
SwitchTransformer import_hf(const std::string& config_json_path, const std::string& weights_path,
                            const ModelConfig& overrides = {});

// config.json and model.safetensors into dir (created if needed).
// A model transformers would route otherwise (a capacity factor or dropless capacity,
// routing groups other than one sequence) is refused, naming the setting, unless
// allow_routing_change: its logits would differ from ours without a word.
void export_hf(const SwitchTransformer& model, const std::string& dir,
               bool allow_routing_change = false);
// What in `config` transformers cannot reproduce in routing ("" when nothing).
std::string hf_routing_difference(const ModelConfig& config);

}  // namespace sw
