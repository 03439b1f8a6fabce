// ModelConfig (core/proto/libswitch.proto): reading, validation, presets, and the
// derived quantities the model needs (which blocks are sparse, expert capacity).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/proto/libswitch.pb.h"

namespace sw {

using ModelConfig = proto::ModelConfig;

// Parses protobuf text format over the proto defaults. A syntax error, an unknown field
// or a bad enum value is an invalid-argument error with its line and column. The result
// is validated.
ModelConfig config_from_text(const std::string& text);
// Protobuf text of every field, defaults included, so the text says exactly what runs.
std::string config_to_text(const ModelConfig& config);

// The same for any message of libswitch.proto: parse text ("what" names it in errors),
// and print every field, defaults included (sub-messages that are present).
void parse_text(const std::string& text, google::protobuf::Message& message, const char* what);
std::string text_with_defaults(const google::protobuf::Message& message);

// "a.b.c=value" merged over a message: nested fields by name, a string without quotes, an
// unknown field an error naming it and the message. Validation is the caller's.
void merge_override(google::protobuf::Message& message, const std::string& key_equals_value);
// The same for a model config, validated: the config is unchanged on error.
void apply_override(ModelConfig& config, const std::string& key_equals_value);

// A preset compiled into the library ("tiny", "switch-base-8", ...); unknown names are
// a not-found error listing the known ones.
ModelConfig preset(const std::string& name);
std::vector<std::string> preset_names();
const std::vector<std::pair<std::string, std::string>>& embedded_presets();

// Rejects nonsense with an invalid-argument error that names the field and the reason,
// e.g. "num_experts: must be >= 1, got 0".
void validate(const ModelConfig& config);

enum class Stack { kEncoder, kDecoder };
const char* stack_name(Stack s);  // "encoder" / "decoder"

// Whether block `block` of a stack holds a Switch FFN (docs/MATH.md §2 placement rules).
bool is_sparse_block(const ModelConfig& config, Stack stack, int64_t block);
int64_t num_layers(const ModelConfig& config, Stack stack);

// Parameters a model of this config holds, from the shapes alone (nothing allocated).
int64_t count_parameters(const ModelConfig& config);

// Tokens per routing group for a stack input of `batch` sequences of `length` tokens;
// an error when GROUP_FIXED's group_size does not divide batch * length.
int64_t routing_group_size(const ModelConfig& config, int64_t batch, int64_t length);
// Expert capacity per group (docs/MATH.md §2): factor or fixed, train or eval.
int64_t expert_capacity(const ModelConfig& config, int64_t tokens_per_group, bool train);

}  // namespace sw
