// sw_config: a ModelConfig or a TrainConfig behind typed, by-name field access.
#include "core/model/config.h"

#include "capi/internal.h"
#include "core/model/config_fields.h"
#include "core/train/train_config.h"

namespace sw::capi {
namespace {

const sw_config& config_arg(const sw_config* c) {
  const sw_config& config = deref(c, "config");
  SW_CHECK(config.message != nullptr, Status::kInternal, "config: empty handle");
  return config;
}

sw_config* new_config(sw_config_kind kind, const google::protobuf::Message& message) {
  auto c = std::make_unique<sw_config>();
  c->kind = kind;
  c->message.reset(message.New());
  c->message->CopyFrom(message);
  return c.release();
}

void validate_config(const sw_config& c) {
  if (c.kind == SW_CONFIG_MODEL)
    validate(static_cast<const ModelConfig&>(*c.message));
  else
    validate(static_cast<const TrainConfig&>(*c.message));
}

}  // namespace

const ModelConfig& model_config_arg(const sw_config* c) {
  const sw_config& config = config_arg(c);
  SW_CHECK_ARG(config.kind == SW_CONFIG_MODEL,
               "config: a model config is needed, got a train config");
  return static_cast<const ModelConfig&>(*config.message);
}

const TrainConfig& train_config_arg(const sw_config* c) {
  const sw_config& config = config_arg(c);
  SW_CHECK_ARG(config.kind == SW_CONFIG_TRAIN,
               "train_config: a train config is needed, got a model config");
  return static_cast<const TrainConfig&>(*config.message);
}

sw_config* new_model_config(const ModelConfig& config) {
  return new_config(SW_CONFIG_MODEL, config);
}

}  // namespace sw::capi

using namespace sw::capi;  // NOLINT: this file implements the namespace's C face

extern "C" {

sw_status sw_config_preset(const char* name, sw_config** out) {
  return guard(__func__, [&] {
    put_out(out, [&] { return new_model_config(sw::preset(string_arg(name, "name"))); });
  });
}

sw_status sw_config_preset_count(int64_t* out) {
  return guard(__func__,
               [&] { deref(out, "out") = static_cast<int64_t>(sw::embedded_presets().size()); });
}

sw_status sw_config_preset_name(int64_t index, char* buf, size_t cap, size_t* needed) {
  return guard(__func__, [&] {
    const auto& presets = sw::embedded_presets();
    SW_CHECK(index >= 0 && index < static_cast<int64_t>(presets.size()), sw::Status::kOutOfRange,
             "index ", index, " is not in [0, ", presets.size(), ")");
    write_string(presets[static_cast<size_t>(index)].first, buf, cap, needed, "buf");
  });
}

sw_status sw_config_from_text(sw_config_kind kind, const char* text, sw_config** out) {
  return guard(__func__, [&] {
    sw_config** target = &deref(out, "out");
    const std::string body = string_arg(text, "text");
    if (kind == SW_CONFIG_MODEL) {
      *target = new_model_config(sw::config_from_text(body));
    } else {
      SW_CHECK_ARG(kind == SW_CONFIG_TRAIN, "kind: ", static_cast<int>(kind),
                   " is neither SW_CONFIG_MODEL nor SW_CONFIG_TRAIN");
      *target = new_config(SW_CONFIG_TRAIN, sw::train_config_from_text(body));
    }
  });
}

sw_status sw_config_train_default(sw_config** out) {
  return guard(__func__, [&] {
    put_out(out, [&] { return new_config(SW_CONFIG_TRAIN, sw::train_config_from_text("")); });
  });
}

sw_status sw_config_clone(const sw_config* config, sw_config** out) {
  return guard(__func__, [&] {
    const sw_config& c = config_arg(config);
    put_out(out, [&] { return new_config(c.kind, *c.message); });
  });
}

sw_status sw_config_kind_of(const sw_config* config, sw_config_kind* out) {
  return guard(__func__, [&] { deref(out, "out") = config_arg(config).kind; });
}

sw_status sw_config_to_text(const sw_config* config, char* buf, size_t cap, size_t* needed) {
  return guard(__func__, [&] {
    write_string(sw::text_with_defaults(*config_arg(config).message), buf, cap, needed, "buf");
  });
}

sw_status sw_config_validate(const sw_config* config) {
  return guard(__func__, [&] { validate_config(config_arg(config)); });
}

sw_status sw_config_field_type(const sw_config* config, const char* field, sw_field_type* out) {
  return guard(__func__, [&] {
    const sw::FieldType t = sw::field_type(*config_arg(config).message, string_arg(field, "field"));
    deref(out, "out") = static_cast<sw_field_type>(t);
  });
}

sw_status sw_config_get_int(const sw_config* config, const char* field, int64_t* out) {
  return guard(__func__, [&] {
    const int64_t v = sw::get_int_field(*config_arg(config).message, string_arg(field, "field"));
    deref(out, "out") = v;
  });
}

sw_status sw_config_get_double(const sw_config* config, const char* field, double* out) {
  return guard(__func__, [&] {
    const double v = sw::get_double_field(*config_arg(config).message, string_arg(field, "field"));
    deref(out, "out") = v;
  });
}

sw_status sw_config_get_bool(const sw_config* config, const char* field, int* out) {
  return guard(__func__, [&] {
    const bool v = sw::get_bool_field(*config_arg(config).message, string_arg(field, "field"));
    deref(out, "out") = v ? 1 : 0;
  });
}

sw_status sw_config_get_string(const sw_config* config, const char* field, char* buf, size_t cap,
                               size_t* needed) {
  return guard(__func__, [&] {
    write_string(sw::get_string_field(*config_arg(config).message, string_arg(field, "field")), buf,
                 cap, needed, "buf");
  });
}

sw_status sw_config_set_int(sw_config* config, const char* field, int64_t value) {
  return guard(__func__, [&] {
    sw::set_int_field(*config_arg(config).message, string_arg(field, "field"), value);
  });
}

sw_status sw_config_set_double(sw_config* config, const char* field, double value) {
  return guard(__func__, [&] {
    sw::set_double_field(*config_arg(config).message, string_arg(field, "field"), value);
  });
}

sw_status sw_config_set_bool(sw_config* config, const char* field, int value) {
  return guard(__func__, [&] {
    sw::set_bool_field(*config_arg(config).message, string_arg(field, "field"), value != 0);
  });
}

sw_status sw_config_set_string(sw_config* config, const char* field, const char* value) {
  return guard(__func__, [&] {
    sw::set_string_field(*config_arg(config).message, string_arg(field, "field"),
                         string_arg(value, "value"));
  });
}

void sw_config_destroy(sw_config* config) { delete config; }

}  // extern "C"
