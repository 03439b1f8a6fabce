// The safetensors reader on good and on damaged files.
#include "core/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace sw {
namespace {

std::string temp_path(const std::string& name) {
  return (std::string(::testing::TempDir()) + "/sw_st_" + name + ".safetensors");
}

// Writes an 8-byte little-endian header length, the header, then the data.
std::string write_file(const std::string& name, const std::string& header, const std::string& data,
                       int64_t claimed_header_len = -1) {
  const std::string path = temp_path(name);
  std::ofstream out(path, std::ios::binary);
  uint64_t len = claimed_header_len < 0 ? header.size() : static_cast<uint64_t>(claimed_header_len);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xFF));
  out << header << data;
  return path;
}

std::string floats(std::initializer_list<float> v) {
  return std::string(reinterpret_cast<const char*>(std::data(v)), v.size() * sizeof(float));
}

void expect_corrupt(const std::string& path, const std::string& text) {
  try {
    read_safetensors(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    EXPECT_TRUE(e.status() == Status::kCorrupt || e.status() == Status::kUnsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

TEST(Safetensors, ReadsTensorsAndMetadata) {
  const std::string header =
      R"({"__metadata__":{"config":"d_model: 4"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"I32","shape":[1,1],"data_offsets":[8,12]}})";
  std::string data = floats({1.5f, -2.f});
  const int32_t seven = 7;
  data.append(reinterpret_cast<const char*>(&seven), 4);
  const SafetensorsFile f = read_safetensors(write_file("good", header, data));
  EXPECT_EQ(f.metadata.at("config"), "d_model: 4");
  EXPECT_EQ(f.tensors.at("a").item(1), -2.0);
  EXPECT_EQ(f.tensors.at("b").shape(), Shape({1, 1}));
  EXPECT_EQ(f.tensors.at("b").item(0), 7);
}

TEST(Safetensors, DamagedFilesAreErrorsNamingTheProblem) {
  const std::string data = floats({1, 2});
  expect_corrupt(write_file("notjson", "{\"a\": [", data), "header is not JSON");
  expect_corrupt(write_file("toolong", "{}", data, 1 << 20), "exceeds the file size");
  expect_corrupt(
      write_file("dtype", R"({"a":{"dtype":"F8","shape":[2],"data_offsets":[0,8]}})", data),
      "dtype \"F8\"");
  expect_corrupt(
      write_file("outside", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", data),
      "tensor \"a\": data offsets lie outside");
  expect_corrupt(
      write_file("shape", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
      "8 bytes do not hold shape [3]");
  expect_corrupt(
      write_file("huge",
                 R"({"a":{"dtype":"F32","shape":[4611686018427387906],"data_offsets":[0,8]}})",
                 data),
      "too large");
  expect_corrupt(
      write_file("negative", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data),
      "negative dimension");
  expect_corrupt(write_file("entry", R"({"a":{"dtype":"F32"}})", data),
                 "tensor \"a\": malformed entry");
  const std::string short_path = temp_path("short");
  std::ofstream(short_path, std::ios::binary) << "abc";
  expect_corrupt(short_path, "shorter than its 8-byte header length");
  try {
    read_safetensors(temp_path("does_not_exist"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kNotFound);
  }
}

}  // namespace
}  // namespace sw
