#include "core/model/config.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>

#include "core/tensor/error.h"

namespace sw {
namespace {

// The field a parse error sits in: the last `name:` or `name {` on its line up to the
// error's column ("" when the line has none, e.g. an unterminated message).
std::string field_at(const std::string& text, int line, int column) {
  size_t begin = 0;
  for (int i = 0; i < line && begin != std::string::npos; ++i) {
    begin = text.find('\n', begin);
    if (begin != std::string::npos) ++begin;
  }
  if (begin == std::string::npos) return "";
  // Up to the error's column, within the line and the text (an error at the end of the
  // text may sit past its last character).
  const size_t end = std::min(
      {text.find('\n', begin), text.size(), begin + static_cast<size_t>(std::max(column, 0)) + 1});
  const auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  std::string name;
  for (size_t i = begin; i < end;) {
    if (!word(text[i])) {
      ++i;
      continue;
    }
    const size_t start = i;
    while (i < end && word(text[i])) ++i;
    size_t after = i;
    while (after < end && (text[after] == ' ' || text[after] == '\t')) ++after;
    if (after < end && (text[after] == ':' || text[after] == '{') &&
        !std::isdigit(static_cast<unsigned char>(text[start])))
      name = text.substr(start, i - start);
  }
  return name;
}

// Collects protobuf's parse errors into one message with line, column and field.
class ParseErrors : public google::protobuf::io::ErrorCollector {
 public:
  explicit ParseErrors(const std::string& text) : source_(text) {}
  void AddError(int line, int column, const std::string& message) override {
    if (!text_.empty()) text_ += "; ";
    const std::string field = field_at(source_, line, column);
    text_ += "line " + std::to_string(line + 1) + ", column " + std::to_string(column + 1) +
             (field.empty() ? "" : " (field " + field + ")") + ": " + message;
  }
  const std::string& text() const { return text_; }

 private:
  const std::string& source_;
  std::string text_;
};

void require(bool ok, const char* field, const std::string& reason) {
  SW_CHECK_ARG(ok, field, ": ", reason);
}

template <typename T>
std::string got(const char* rule, T value) {
  return detail::concat(rule, ", got ", value);
}

// Round half to even (Python's round, T5X), independent of the FP rounding mode.
double round_half_even(double x) {
  const double down = std::floor(x), frac = x - down;
  if (frac > 0.5) return down + 1;
  if (frac < 0.5) return down;
  return std::fmod(down, 2.0) == 0.0 ? down : down + 1;
}

constexpr int64_t kMaxLayers = 4096;           // random-stream sites hold 16 bits of block index
constexpr int64_t kMaxIds = int64_t{1} << 31;  // token ids and expert indices are i32
// 35T parameters: 20x Switch-C, and far beyond one process's memory.
constexpr double kMaxParameters = 35184372088832.0;  // 2^45

}  // namespace

void parse_text(const std::string& text, google::protobuf::Message& message, const char* what) {
  google::protobuf::TextFormat::Parser parser;
  ParseErrors errors(text);
  parser.RecordErrorsTo(&errors);
  SW_CHECK_ARG(parser.ParseFromString(text, &message), what, " text: ", errors.text());
}

void set_defaults_explicitly(google::protobuf::Message& message) {
  const auto* descriptor = message.GetDescriptor();
  const auto* reflection = message.GetReflection();
  using FD = google::protobuf::FieldDescriptor;
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const auto* field = descriptor->field(i);
    if (field->is_repeated()) continue;
    if (field->cpp_type() == FD::CPPTYPE_MESSAGE) {  // only messages already present
      if (reflection->HasField(message, field))
        set_defaults_explicitly(*reflection->MutableMessage(&message, field));
      continue;
    }
    if (reflection->HasField(message, field)) continue;
    switch (field->cpp_type()) {
      case FD::CPPTYPE_INT64:
        reflection->SetInt64(&message, field, field->default_value_int64());
        break;
      case FD::CPPTYPE_UINT64:
        reflection->SetUInt64(&message, field, field->default_value_uint64());
        break;
      case FD::CPPTYPE_DOUBLE:
        reflection->SetDouble(&message, field, field->default_value_double());
        break;
      case FD::CPPTYPE_BOOL:
        reflection->SetBool(&message, field, field->default_value_bool());
        break;
      case FD::CPPTYPE_ENUM:
        reflection->SetEnum(&message, field, field->default_value_enum());
        break;
      case FD::CPPTYPE_STRING:
        reflection->SetString(&message, field, field->default_value_string());
        break;
      default:
        break;
    }
  }
}

std::string text_with_defaults(const google::protobuf::Message& message) {
  std::unique_ptr<google::protobuf::Message> full(message.New());
  full->CopyFrom(message);
  set_defaults_explicitly(*full);
  std::string text;
  google::protobuf::TextFormat::PrintToString(*full, &text);
  return text;
}

ModelConfig config_from_text(const std::string& text) {
  ModelConfig config;
  parse_text(text, config, "model config");
  validate(config);
  return config;
}

std::string config_to_text(const ModelConfig& config) { return text_with_defaults(config); }

void merge_override(google::protobuf::Message& config, const std::string& key_equals_value) {
  const size_t eq = key_equals_value.find('=');
  SW_CHECK_ARG(eq != std::string::npos && eq > 0, "override \"", key_equals_value,
               "\": expected key=value");
  const std::string key = key_equals_value.substr(0, eq);
  std::string value = key_equals_value.substr(eq + 1);
  // "a.b.c=v" becomes the text "a { b { c: v } }", merged over the config.
  const google::protobuf::Descriptor* message = config.GetDescriptor();
  std::string open, close;
  size_t start = 0;
  while (true) {
    const size_t dot = key.find('.', start);
    const std::string name = key.substr(start, dot == std::string::npos ? dot : dot - start);
    const google::protobuf::FieldDescriptor* field =
        message ? message->FindFieldByName(name) : nullptr;
    SW_CHECK_ARG(field, "override \"", key_equals_value, "\": no field \"", name, "\" in ",
                 message ? message->name() : std::string("a scalar"));
    if (dot == std::string::npos) {
      if (field->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
          (value.empty() || value.front() != '"')) {
        std::string quoted = "\"";
        for (char c : value)
          quoted += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
        value = quoted + "\"";
      }
      open += name + ": " + value;
      break;
    }
    SW_CHECK_ARG(field->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE, "override \"",
                 key_equals_value, "\": \"", name, "\" is not a message");
    open += name + " { ";
    close += " }";
    message = field->message_type();
    start = dot + 1;
  }
  std::unique_ptr<google::protobuf::Message> patch(config.New());
  parse_text(open + close, *patch, ("override \"" + key_equals_value + "\"").c_str());
  config.MergeFrom(*patch);
}

void apply_override(ModelConfig& config, const std::string& key_equals_value) {
  ModelConfig merged = config;
  merge_override(merged, key_equals_value);
  validate(merged);
  config = merged;
}

ModelConfig preset(const std::string& name) {
  for (const auto& [preset_name, text] : embedded_presets())
    if (preset_name == name) return config_from_text(text);
  std::string known;
  for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error(Status::kNotFound, "preset \"" + name + "\" is not known; presets: " + known);
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const auto& entry : embedded_presets()) names.push_back(entry.first);
  return names;
}

namespace {

// [vocab, d] tables: the input embedding (or one per stack), and lm_head unless tied.
int embedding_tables(const ModelConfig& c) {
  return (c.separate_input_embeddings() ? 2 : 1) + (c.tie_word_embeddings() ? 0 : 1);
}

// The parameter count in doubles: a count that overflows int64 is still a number to name.
double parameter_count_f64(const ModelConfig& c) {
  const double d = static_cast<double>(c.d_model()), ff = static_cast<double>(c.d_ff());
  const double inner = static_cast<double>(c.num_heads()) * static_cast<double>(c.d_kv());
  const double ffn = (c.activation() == ModelConfig::GATED_GELU ? 3 : 2) * d * ff;
  const double attention = 4 * d * inner;
  double total = static_cast<double>(c.vocab_size()) * d * embedding_tables(c);
  for (Stack s : {Stack::kEncoder, Stack::kDecoder}) {
    const bool decoder = s == Stack::kDecoder;
    const double bias_table = static_cast<double>(c.relative_attention_num_buckets()) *
                              static_cast<double>(c.num_heads());
    total += bias_table + d;  // the position-bias table and the final norm
    for (int64_t i = 0; i < num_layers(c, s); ++i) {
      total += (decoder ? 2 : 1) * attention + (decoder ? 3 : 2) * d;
      total += is_sparse_block(c, s, i) ? static_cast<double>(c.num_experts()) * (ffn + d) : ffn;
    }
  }
  return total;
}

}  // namespace

void validate(const ModelConfig& c) {
  // Every real-valued field must be finite before any other rule reads it.
  const auto* descriptor = c.GetDescriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const auto* field = descriptor->field(i);
    if (field->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE) continue;
    const double v = c.GetReflection()->GetDouble(c, field);
    require(std::isfinite(v), field->name().c_str(), got("must be finite", v));
  }
  require(c.vocab_size() >= 2 && c.vocab_size() < kMaxIds, "vocab_size",
          got("must be in [2, 2^31)", c.vocab_size()));
  require(c.d_model() >= 1, "d_model", got("must be >= 1", c.d_model()));
  require(c.d_ff() >= 1, "d_ff", got("must be >= 1", c.d_ff()));
  require(c.d_kv() >= 1, "d_kv", got("must be >= 1", c.d_kv()));
  require(c.num_heads() >= 1, "num_heads", got("must be >= 1", c.num_heads()));
  require(c.num_encoder_layers() >= 1 && c.num_encoder_layers() <= kMaxLayers, "num_encoder_layers",
          got("must be in [1, 4096]", c.num_encoder_layers()));
  require(c.num_decoder_layers() >= 1 && c.num_decoder_layers() <= kMaxLayers, "num_decoder_layers",
          got("must be in [1, 4096]", c.num_decoder_layers()));
  require(c.num_experts() >= 1, "num_experts", got("must be >= 1", c.num_experts()));
  require(c.num_experts() < kMaxIds, "num_experts", got("must be < 2^31", c.num_experts()));
  require(c.encoder_sparse_step() >= 0, "encoder_sparse_step",
          got("must be >= 0 (0 = dense)", c.encoder_sparse_step()));
  require(c.decoder_sparse_step() >= 0, "decoder_sparse_step",
          got("must be >= 0 (0 = dense)", c.decoder_sparse_step()));
  require(c.router_jitter_eps() >= 0 && c.router_jitter_eps() < 1, "router_jitter_eps",
          got("must be in [0, 1)", c.router_jitter_eps()));
  require(c.train_capacity_factor() > 0, "train_capacity_factor",
          got("must be > 0", c.train_capacity_factor()));
  require(c.eval_capacity_factor() > 0, "eval_capacity_factor",
          got("must be > 0", c.eval_capacity_factor()));
  require(c.min_capacity() >= 0, "min_capacity", got("must be >= 0", c.min_capacity()));
  require(c.expert_capacity() >= 1, "expert_capacity", got("must be >= 1", c.expert_capacity()));
  require(std::isfinite(c.router_bias_update_rate()) && c.router_bias_update_rate() >= 0,
          "router_bias_update_rate", got("must be >= 0 and finite", c.router_bias_update_rate()));
  if (c.routing() == ModelConfig::EXPERT_CHOICE)
    require(c.router_bias_update_rate() == 0, "router_bias_update_rate",
            got("must be 0 with routing EXPERT_CHOICE (the experts choose)",
                c.router_bias_update_rate()));
  if (c.routing() == ModelConfig::EXPERT_CHOICE) {
    require(c.decoder_sparse_step() == 0, "routing",
            "EXPERT_CHOICE lets each expert pick among a whole group's tokens, which a decoder "
            "that sees one position at a time cannot: set decoder_sparse_step 0 (expert choice "
            "in the encoder only)");
    require(c.num_selected_experts() == 1, "num_selected_experts",
            "must be 1 with routing EXPERT_CHOICE (the experts choose, not the tokens)");
    require(
        c.aux_loss_coef() == 0, "aux_loss_coef",
        got("must be 0 with routing EXPERT_CHOICE (balanced by construction)", c.aux_loss_coef()));
  }
  require(c.num_selected_experts() >= 1 && c.num_selected_experts() <= c.num_experts(),
          "num_selected_experts",
          got(detail::concat("must be in [1, num_experts = ", c.num_experts(), "]").c_str(),
              c.num_selected_experts()));
  if (c.routing_group() == ModelConfig::GROUP_FIXED)
    require(c.group_size() >= 1, "group_size",
            got("must be >= 1 when routing_group is GROUP_FIXED", c.group_size()));
  require(c.aux_loss_coef() >= 0, "aux_loss_coef", got("must be >= 0", c.aux_loss_coef()));
  require(c.z_loss_coef() >= 0, "z_loss_coef", got("must be >= 0", c.z_loss_coef()));
  require(c.dropout_rate() >= 0 && c.dropout_rate() < 1, "dropout_rate",
          got("must be in [0, 1)", c.dropout_rate()));
  require(c.expert_dropout_rate() >= 0 && c.expert_dropout_rate() < 1, "expert_dropout_rate",
          got("must be in [0, 1)", c.expert_dropout_rate()));
  require(c.init_scale() > 0, "init_scale", got("must be > 0", c.init_scale()));
  require(c.relative_attention_num_buckets() >= 4, "relative_attention_num_buckets",
          got("must be >= 4", c.relative_attention_num_buckets()));
  require(
      c.relative_attention_max_distance() > c.relative_attention_num_buckets() / 2,
      "relative_attention_max_distance",
      got("must exceed relative_attention_num_buckets / 2", c.relative_attention_max_distance()));
  require(c.norm_epsilon() > 0, "norm_epsilon", got("must be > 0", c.norm_epsilon()));
  require(!c.separate_input_embeddings() || !c.tie_word_embeddings(), "separate_input_embeddings",
          "needs tie_word_embeddings false (a tied model has one embedding for both stacks and "
          "the output)");
  // A size no machine holds is named here, not by an allocator deep in the build.
  const double parameters = parameter_count_f64(c);
  require(parameters <= kMaxParameters, "model size",
          detail::concat("the config describes ", parameters, " parameters (d_model ", c.d_model(),
                         ", d_ff ", c.d_ff(), ", num_experts ", c.num_experts(), ", vocab_size ",
                         c.vocab_size(), "), more than the 2^45 one model may have"));
  for (const auto& [field, id] : {std::pair<const char*, int64_t>{"pad_token_id", c.pad_token_id()},
                                  {"eos_token_id", c.eos_token_id()},
                                  {"decoder_start_token_id", c.decoder_start_token_id()}})
    require(id >= 0 && id < c.vocab_size(), field,
            detail::concat("must be in [0, vocab_size = ", c.vocab_size(), "), got ", id));
}

int64_t count_parameters(const ModelConfig& c) {
  SW_CHECK_ARG(parameter_count_f64(c) <= kMaxParameters, "count_parameters: the config describes ",
               parameter_count_f64(c), " parameters, more than 2^45");
  const int64_t d = c.d_model(), ff = c.d_ff(), inner = c.num_heads() * c.d_kv();
  const int64_t ffn = (c.activation() == ModelConfig::GATED_GELU ? 3 : 2) * d * ff;
  const int64_t attention = 4 * d * inner;
  int64_t total = c.vocab_size() * d * embedding_tables(c);
  for (Stack s : {Stack::kEncoder, Stack::kDecoder}) {
    const bool decoder = s == Stack::kDecoder;
    total += c.relative_attention_num_buckets() * c.num_heads() + d;  // bias, final norm
    for (int64_t i = 0; i < num_layers(c, s); ++i) {
      total += (decoder ? 2 : 1) * attention + (decoder ? 3 : 2) * d;         // attention, norms
      total += is_sparse_block(c, s, i) ? c.num_experts() * (ffn + d) : ffn;  // experts + router
    }
  }
  return total;
}

const char* stack_name(Stack s) { return s == Stack::kEncoder ? "encoder" : "decoder"; }

int64_t num_layers(const ModelConfig& c, Stack stack) {
  return stack == Stack::kEncoder ? c.num_encoder_layers() : c.num_decoder_layers();
}

bool is_sparse_block(const ModelConfig& c, Stack stack, int64_t block) {
  const int64_t step = stack == Stack::kEncoder ? c.encoder_sparse_step() : c.decoder_sparse_step();
  if (step <= 0) return false;
  if (c.sparse_placement() == ModelConfig::PLACEMENT_HF) return step == 1 || block % step == 1;
  return block % step == step - 1;
}

int64_t routing_group_size(const ModelConfig& c, int64_t batch, int64_t length) {
  switch (c.routing_group()) {
    case ModelConfig::GROUP_SEQUENCE:
      return length;
    case ModelConfig::GROUP_BATCH:
      return batch * length;
    case ModelConfig::GROUP_FIXED:
      SW_CHECK_ARG((batch * length) % c.group_size() == 0, "group_size: ", c.group_size(),
                   " does not divide the ", batch * length, " tokens (batch ", batch, " x length ",
                   length, ") of a stack input; pick a batch or length that it divides");
      return c.group_size();
  }
  throw Error(Status::kInternal, "routing_group: unknown value");
}

int64_t expert_capacity(const ModelConfig& c, int64_t tokens_per_group, bool train) {
  switch (c.capacity_mode()) {
    case ModelConfig::CAPACITY_FIXED:
      return c.expert_capacity();
    case ModelConfig::CAPACITY_DROPLESS:
      return tokens_per_group;
    case ModelConfig::CAPACITY_FACTOR: {
      const double factor = train ? c.train_capacity_factor() : c.eval_capacity_factor();
      // Above the group size a capacity changes nothing; the clamp keeps the cast defined.
      // k assignments per token: k times the top-1 capacity (GShard's top-2 capacity).
      const double raw =
          std::min(factor * static_cast<double>(tokens_per_group * c.num_selected_experts()) /
                       static_cast<double>(c.num_experts()),
                   static_cast<double>(tokens_per_group));
      // T5X rounds half to even (Python's round); MTF takes int(), i.e. floor.
      const double rounded =
          c.capacity_rounding() == ModelConfig::ROUND_DOWN ? std::floor(raw) : round_half_even(raw);
      return std::max<int64_t>(c.min_capacity(), static_cast<int64_t>(rounded));
    }
  }
  throw Error(Status::kInternal, "capacity_mode: unknown value");
}

}  // namespace sw
