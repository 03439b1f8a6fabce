// Typed access to one field of a config message by its path ("num_experts",
// "model.num_experts", "schedule.warmup_steps"), through protobuf reflection: what the
// C ABI's sw_config_get_* / sw_config_set_* need without a by-value struct that could
// never grow. An unknown name, a path through a scalar or a repeated field, or a value
// of the wrong type is an invalid-argument error naming the path.
#pragma once

#include <google/protobuf/message.h>

#include <cstdint>
#include <string>

namespace sw {

enum class FieldType { kInt, kDouble, kString, kBool, kEnum, kMessage };
const char* field_type_name(FieldType type);

FieldType field_type(const google::protobuf::Message& message, const std::string& path);

// Integers of any width; an enum gives its number.
int64_t get_int_field(const google::protobuf::Message& message, const std::string& path);
double get_double_field(const google::protobuf::Message& message, const std::string& path);
// Strings; an enum gives its value's name.
std::string get_string_field(const google::protobuf::Message& message, const std::string& path);
bool get_bool_field(const google::protobuf::Message& message, const std::string& path);

// Values out of the field's range (an int32 field, an enum number or name that does not
// exist) are errors; the message is unchanged when one throws. A double field accepts an
// integer too.
void set_int_field(google::protobuf::Message& message, const std::string& path, int64_t value);
void set_double_field(google::protobuf::Message& message, const std::string& path, double value);
void set_string_field(google::protobuf::Message& message, const std::string& path,
                      const std::string& value);
void set_bool_field(google::protobuf::Message& message, const std::string& path, bool value);

}  // namespace sw
