#include "core/io/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

namespace sw {
namespace {

DType parse_dtype(const std::string& name, const std::string& where) {
  if (name == "F32") return DType::f32;
  if (name == "F64") return DType::f64;
  if (name == "BF16") return DType::bf16;
  if (name == "I32") return DType::i32;
  if (name == "I64") return DType::i64;
  throw Error(Status::kUnsupported,
              where + ": dtype \"" + name + "\" is not supported (F32, F64, BF16, I32, I64)");
}

}  // namespace

namespace {

// A JSON array of integers the type can represent (a float such as 1e55, or a negative
// offset, would not convert).
template <typename T>
std::vector<T> integers(const nlohmann::json& array, const std::string& where, const char* what,
                        const char* element) {
  SW_CHECK(array.is_array(), Status::kCorrupt, where, ": ", what, " is not an array");
  std::vector<T> out;
  for (const nlohmann::json& v : array) {
    SW_CHECK(!v.is_number_integer() || v.is_number_unsigned() || v.get<int64_t>() >= 0,
             Status::kCorrupt, where, ": negative ", element, " ", v.dump(), " in ", what);
    SW_CHECK(v.is_number_unsigned() &&
                 v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max()),
             Status::kCorrupt, where, ": ", what, " holds ", v.dump(), ", not an integer ", element,
             " in range");
    out.push_back(static_cast<T>(v.get<uint64_t>()));
  }
  return out;
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  SW_CHECK(in.good(), Status::kNotFound, "safetensors file ", path, ": cannot open");
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  unsigned char len_bytes[8];
  SW_CHECK(file_size >= 8 && in.read(reinterpret_cast<char*>(len_bytes), 8), Status::kCorrupt,
           "safetensors file ", path, ": shorter than its 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  SW_CHECK(header_len <= file_size - 8, Status::kCorrupt, "safetensors file ", path,
           ": header length ", header_len, " exceeds the file size ", file_size);
  std::string header(header_len, '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_len));
  const uint64_t data_size = file_size - 8 - header_len;

  nlohmann::json json;
  try {
    json = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception& e) {
    throw Error(Status::kCorrupt, "safetensors file " + path + ": header is not JSON: " + e.what());
  }
  SW_CHECK(json.is_object(), Status::kCorrupt, "safetensors file ", path,
           ": header is not a JSON object");

  SafetensorsFile file;
  for (const auto& [name, entry] : json.items()) {
    const std::string where = "safetensors file " + path + ", tensor \"" + name + "\"";
    try {
      if (name == "__metadata__") {
        for (const auto& [key, value] : entry.items())
          file.metadata[key] = value.get<std::string>();
        continue;
      }
      const DType dtype = parse_dtype(entry.at("dtype").get<std::string>(), where);
      const Shape shape = integers<int64_t>(entry.at("shape"), where, "shape", "dimension");
      const auto offsets =
          integers<uint64_t>(entry.at("data_offsets"), where, "data_offsets", "offset");
      SW_CHECK(offsets.size() == 2 && offsets[0] <= offsets[1] && offsets[1] <= data_size,
               Status::kCorrupt, where, ": data offsets lie outside the ", data_size,
               " data bytes");
      size_t bytes = 0;
      try {
        bytes = shape_bytes(shape, dtype);
      } catch (const Error& e) {
        throw Error(Status::kCorrupt, where + ": " + e.what());
      }
      // Checked before allocating: the header alone must not make us allocate.
      SW_CHECK(offsets[1] - offsets[0] == bytes, Status::kCorrupt, where, ": ",
               offsets[1] - offsets[0], " bytes do not hold shape ", shape_str(shape), " of ",
               dtype_name(dtype));
      Tensor t = Tensor::empty(shape, dtype);
      in.seekg(static_cast<std::streamoff>(8 + header_len + offsets[0]));
      SW_CHECK(in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(t.nbytes())) ||
                   t.nbytes() == 0,
               Status::kCorrupt, where, ": truncated data");
      file.tensors.emplace(name, std::move(t));
    } catch (const nlohmann::json::exception& e) {
      throw Error(Status::kCorrupt, where + ": malformed entry: " + e.what());
    }
  }
  return file;
}

namespace {

// fsync a file or directory, so a rename after it cannot expose an empty file.
void sync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  SW_CHECK(fd >= 0, Status::kIo, "safetensors: cannot open ", path, " to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  SW_CHECK(rc == 0, Status::kIo, "safetensors: fsync of ", path, " failed");
}

}  // namespace

void write_safetensors(const std::string& path,
                       const std::vector<std::pair<std::string, Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  static const std::map<DType, const char*> kNames = {{DType::f32, "F32"},
                                                      {DType::f64, "F64"},
                                                      {DType::bf16, "BF16"},
                                                      {DType::i32, "I32"},
                                                      {DType::i64, "I64"}};
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    SW_CHECK_ARG(t.defined(), "safetensors: tensor ", name, " is undefined");
    SW_CHECK_ARG(name != "__metadata__" && !header.contains(name), "safetensors: tensor name ",
                 name, " is reserved or given twice");
    header[name] = {{"dtype", kNames.at(t.dtype())},
                    {"shape", t.shape()},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::string temporary = path + ".tmp";
  try {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    SW_CHECK(out, Status::kIo, "safetensors: cannot write ", temporary);
    const uint64_t n = text.size();
    unsigned char length[8];
    for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(n >> (8 * i));
    out.write(reinterpret_cast<const char*>(length), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& [name, t] : tensors) {
      const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
      out.write(static_cast<const char*>(host.raw()), static_cast<std::streamsize>(host.nbytes()));
    }
    out.close();
    SW_CHECK(out, Status::kIo, "safetensors: cannot write ", temporary);
    sync_file(temporary);
    SW_CHECK(std::rename(temporary.c_str(), path.c_str()) == 0, Status::kIo,
             "safetensors: cannot rename ", temporary, " to ", path);
  } catch (...) {
    std::remove(temporary.c_str());
    throw;
  }
  const size_t slash = path.rfind('/');
  sync_file(slash == std::string::npos ? "." : path.substr(0, slash + 1));
}

}  // namespace sw
