#include "core/model/config_fields.h"

#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>

#include "core/tensor/error.h"

namespace sw {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// The message holding the path's last field, and that field. `mutable_message` walks
// through (and creates) sub-messages; without it, unset ones read as their defaults.
template <typename M>
std::pair<M*, const FieldDescriptor*> resolve(M& root, const std::string& path) {
  SW_CHECK_ARG(!path.empty(), "config field: the name is empty");
  M* message = &root;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string name = path.substr(start, dot == std::string::npos ? dot : dot - start);
    const FieldDescriptor* field = message->GetDescriptor()->FindFieldByName(name);
    SW_CHECK_ARG(field, "config field \"", path, "\": no field \"", name, "\" in ",
                 message->GetDescriptor()->name());
    SW_CHECK_ARG(!field->is_repeated(), "config field \"", path, "\": \"", name,
                 "\" is a list; set it through the config text");
    if (dot == std::string::npos) return {message, field};
    SW_CHECK_ARG(field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE, "config field \"", path,
                 "\": \"", name, "\" is not a message");
    if constexpr (std::is_const_v<M>)
      message = &message->GetReflection()->GetMessage(*message, field);
    else
      message = message->GetReflection()->MutableMessage(message, field);
    start = dot + 1;
  }
}

FieldType type_of(const FieldDescriptor* f) {
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return FieldType::kInt;
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      return FieldType::kDouble;
    case FieldDescriptor::CPPTYPE_STRING:
      return FieldType::kString;
    case FieldDescriptor::CPPTYPE_BOOL:
      return FieldType::kBool;
    case FieldDescriptor::CPPTYPE_ENUM:
      return FieldType::kEnum;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return FieldType::kMessage;
  }
  return FieldType::kMessage;
}

[[noreturn]] void wrong_type(const std::string& path, const FieldDescriptor* f, const char* asked) {
  throw Error(Status::kInvalidArgument,
              detail::concat("config field \"", path, "\" is ", field_type_name(type_of(f)),
                             ", not ", asked));
}

template <typename T>
T in_range(const std::string& path, int64_t value) {
  SW_CHECK(value >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
               (value < 0 || static_cast<uint64_t>(value) <=
                                 static_cast<uint64_t>(std::numeric_limits<T>::max())),
           Status::kOutOfRange, "config field \"", path, "\": ", value, " is out of range");
  return static_cast<T>(value);
}

float to_float(const std::string& path, double value) {
  SW_CHECK(!(std::fabs(value) > std::numeric_limits<float>::max()), Status::kOutOfRange,
           "config field \"", path, "\": ", value, " does not fit a float");
  return static_cast<float>(value);
}

}  // namespace

const char* field_type_name(FieldType type) {
  switch (type) {
    case FieldType::kInt:
      return "an integer";
    case FieldType::kDouble:
      return "a number";
    case FieldType::kString:
      return "a string";
    case FieldType::kBool:
      return "a bool";
    case FieldType::kEnum:
      return "an enum";
    case FieldType::kMessage:
      return "a message";
  }
  return "?";
}

FieldType field_type(const Message& message, const std::string& path) {
  return type_of(resolve(message, path).second);
}

int64_t get_int_field(const Message& root, const std::string& path) {
  const auto [m, f] = resolve(root, path);
  const auto* r = m->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return r->GetInt32(*m, f);
    case FieldDescriptor::CPPTYPE_INT64:
      return r->GetInt64(*m, f);
    case FieldDescriptor::CPPTYPE_UINT32:
      return r->GetUInt32(*m, f);
    case FieldDescriptor::CPPTYPE_UINT64: {
      const uint64_t v = r->GetUInt64(*m, f);
      SW_CHECK(v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), Status::kOutOfRange,
               "config field \"", path, "\": ", v, " does not fit an int64");
      return static_cast<int64_t>(v);
    }
    case FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnumValue(*m, f);
    default:
      wrong_type(path, f, "an integer");
  }
}

double get_double_field(const Message& root, const std::string& path) {
  const auto [m, f] = resolve(root, path);
  const auto* r = m->GetReflection();
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) return r->GetDouble(*m, f);
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT) return r->GetFloat(*m, f);
  wrong_type(path, f, "a number");
}

std::string get_string_field(const Message& root, const std::string& path) {
  const auto [m, f] = resolve(root, path);
  const auto* r = m->GetReflection();
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) return r->GetString(*m, f);
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) return r->GetEnum(*m, f)->name();
  wrong_type(path, f, "a string");
}

bool get_bool_field(const Message& root, const std::string& path) {
  const auto [m, f] = resolve(root, path);
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_BOOL) return m->GetReflection()->GetBool(*m, f);
  wrong_type(path, f, "a bool");
}

void set_int_field(Message& root, const std::string& path, int64_t value) {
  // Resolve on a copy first: walking the path creates sub-messages, and a failure must
  // leave the caller's message as it was.
  std::unique_ptr<Message> copy(root.New());
  copy->CopyFrom(root);
  const auto [m, f] = resolve(*copy, path);
  const auto* r = m->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      r->SetInt32(m, f, in_range<int32_t>(path, value));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      r->SetInt64(m, f, value);
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      r->SetUInt32(m, f, in_range<uint32_t>(path, value));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      r->SetUInt64(m, f, in_range<uint64_t>(path, value));
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      SW_CHECK(f->enum_type()->FindValueByNumber(in_range<int32_t>(path, value)),
               Status::kOutOfRange, "config field \"", path, "\": ", value, " is not a value of ",
               f->enum_type()->name());
      r->SetEnumValue(m, f, static_cast<int>(value));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      r->SetDouble(m, f, static_cast<double>(value));
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      r->SetFloat(m, f, to_float(path, static_cast<double>(value)));
      break;
    default:
      wrong_type(path, f, "an integer");
  }
  root.CopyFrom(*copy);
}

void set_double_field(Message& root, const std::string& path, double value) {
  std::unique_ptr<Message> copy(root.New());
  copy->CopyFrom(root);
  const auto [m, f] = resolve(*copy, path);
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE)
    m->GetReflection()->SetDouble(m, f, value);
  else if (f->cpp_type() == FieldDescriptor::CPPTYPE_FLOAT)
    m->GetReflection()->SetFloat(m, f, to_float(path, value));
  else
    wrong_type(path, f, "a number");
  root.CopyFrom(*copy);
}

void set_string_field(Message& root, const std::string& path, const std::string& value) {
  std::unique_ptr<Message> copy(root.New());
  copy->CopyFrom(root);
  const auto [m, f] = resolve(*copy, path);
  if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
    m->GetReflection()->SetString(m, f, value);
  } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_ENUM) {
    const auto* v = f->enum_type()->FindValueByName(value);
    SW_CHECK(v, Status::kOutOfRange, "config field \"", path, "\": \"", value,
             "\" is not a value of ", f->enum_type()->name());
    m->GetReflection()->SetEnum(m, f, v);
  } else {
    wrong_type(path, f, "a string");
  }
  root.CopyFrom(*copy);
}

void set_bool_field(Message& root, const std::string& path, bool value) {
  std::unique_ptr<Message> copy(root.New());
  copy->CopyFrom(root);
  const auto [m, f] = resolve(*copy, path);
  if (f->cpp_type() != FieldDescriptor::CPPTYPE_BOOL) wrong_type(path, f, "a bool");
  m->GetReflection()->SetBool(m, f, value);
  root.CopyFrom(*copy);
}

}  // namespace sw
