// The C ABI through libswitch.so alone (this test links nothing else of the library):
// every entry point on good input, NULL handles and buffers, wrong lengths, bad configs,
// out-of-range ids, checkpoints, training continued in a new trainer, and concurrent
// forward passes on one model.
#include <dlpack/dlpack.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "libswitch.h"
#include "libswitch.hpp"

namespace {

namespace fs = std::filesystem;

// A status and this thread's message, checked together.
#define EXPECT_STATUS(call, status, fragment)                                             \
  do {                                                                                    \
    const sw_status s_ = (call);                                                          \
    EXPECT_EQ(s_, status) << #call << ": " << sw_last_error();                            \
    EXPECT_NE(std::string(sw_last_error()).find(fragment), std::string::npos)             \
        << #call << " said: " << sw_last_error() << " (expected \"" << fragment << "\")"; \
  } while (0)
#define ASSERT_SW_OK(call) ASSERT_EQ((call), SW_OK) << #call << ": " << sw_last_error()

struct TempDir {
  TempDir() {
    char name[] = "/tmp/sw_capi_test_XXXXXX";
    path = mkdtemp(name);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string path;
};

// A small batch for `tiny` (vocab 384): 2 sequences of 8 / 4 tokens with labels.
struct TinyBatch {
  std::vector<int32_t> input_ids, decoder_input_ids, labels;
  sw_batch view;
  TinyBatch() {
    for (int i = 0; i < 16; ++i) input_ids.push_back(3 + (i * 37) % 300);
    decoder_input_ids = {0, 10, 11, 12, 0, 20, 21, 22};
    labels = {10, 11, 12, 1, 20, 21, 22, 1};
    SW_INIT_STRUCT(&view);
    view.batch = 2;
    view.input_len = 8;
    view.target_len = 4;
    view.input_ids = input_ids.data();
    view.decoder_input_ids = decoder_input_ids.data();
    view.labels = labels.data();
  }
};

class CApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_SW_OK(sw_config_preset("tiny", &config_));
    // No dropout: forward passes in train mode are repeatable.
    ASSERT_SW_OK(sw_config_set_double(config_, "dropout_rate", 0.0));
    ASSERT_SW_OK(sw_config_set_double(config_, "expert_dropout_rate", 0.0));
    ASSERT_SW_OK(sw_model_create(config_, "cpu", 7, &model_));
  }
  void TearDown() override {
    sw_model_destroy(model_);
    sw_config_destroy(config_);
  }

  std::vector<float> logits(sw_model* m, const sw_batch& b) {
    sw_result* r = nullptr;
    EXPECT_EQ(sw_model_forward(m, &b, 0, 0, &r), SW_OK) << sw_last_error();
    int64_t dims[3] = {0, 0, 0};
    EXPECT_EQ(sw_result_logits_shape(r, dims), SW_OK);
    std::vector<float> out(static_cast<size_t>(dims[0] * dims[1] * dims[2]));
    EXPECT_EQ(sw_result_logits(r, out.data(), out.size()), SW_OK);
    sw_result_destroy(r);
    return out;
  }

  double loss(sw_model* m, const sw_batch& b) {
    sw_result* r = nullptr;
    EXPECT_EQ(sw_model_forward(m, &b, 0, 0, &r), SW_OK) << sw_last_error();
    double l = NAN;
    EXPECT_EQ(sw_result_losses(r, &l, nullptr, nullptr, nullptr), SW_OK);
    sw_result_destroy(r);
    return l;
  }

  sw_config* config_ = nullptr;
  sw_model* model_ = nullptr;
  TinyBatch batch_;
};

TEST(CApiBasics, VersionAndStatus) {
  EXPECT_EQ(sw_abi_version(), SW_ABI_VERSION);
  EXPECT_EQ(std::string(sw_version()), std::to_string(SW_VERSION_MAJOR) + "." +
                                           std::to_string(SW_VERSION_MINOR) + "." +
                                           std::to_string(SW_VERSION_PATCH));
  EXPECT_STREQ(sw_status_string(SW_OK), "SW_OK");
  EXPECT_STREQ(sw_status_string(SW_ERR_CORRUPT), "SW_ERR_CORRUPT");
  EXPECT_STREQ(sw_status_string(SW_ERR_INTERNAL), "SW_ERR_INTERNAL");
  EXPECT_STREQ(sw_status_string(static_cast<sw_status>(999)), "SW_ERR_UNKNOWN");
  int devices = -1;
  ASSERT_SW_OK(sw_cuda_device_count(&devices));
  EXPECT_GE(devices, 0);
  if (!sw_cuda_built()) {
    EXPECT_EQ(devices, 0);
  }
}

TEST(CApiBasics, LastErrorIsPerThreadAndClearedBySuccess) {
  sw_config* c = nullptr;
  EXPECT_STATUS(sw_config_preset("no-such-model", &c), SW_ERR_NOT_FOUND, "no-such-model");
  std::string other_thread = "unset";
  std::thread([&] { other_thread = sw_last_error(); }).join();
  EXPECT_EQ(other_thread, "");
  EXPECT_NE(std::string(sw_last_error()), "");
  int64_t n = 0;
  ASSERT_SW_OK(sw_config_preset_count(&n));
  EXPECT_STREQ(sw_last_error(), "");
}

TEST(CApiConfig, PresetsTextAndTypedFields) {
  int64_t n = 0;
  ASSERT_SW_OK(sw_config_preset_count(&n));
  ASSERT_GE(n, 2);
  bool has_tiny = false;
  for (int64_t i = 0; i < n; ++i) {
    char name[64];
    ASSERT_SW_OK(sw_config_preset_name(i, name, sizeof name, nullptr));
    has_tiny |= std::string(name) == "tiny";
  }
  EXPECT_TRUE(has_tiny);
  EXPECT_STATUS(sw_config_preset_name(n, nullptr, 0, nullptr), SW_ERR_OUT_OF_RANGE, "index");

  libswitch::Config c = libswitch::Config::preset("switch-base-8");
  EXPECT_EQ(c.get_int("num_experts"), 8);
  EXPECT_EQ(c.get_string("activation"), "RELU");  // an enum by name
  EXPECT_EQ(c.get_string("name"), "switch-base-8");
  c.set("num_experts", 16).set("aux_loss_coef", 0.02).set("capacity_mode", "CAPACITY_FIXED");
  EXPECT_EQ(c.get_int("num_experts"), 16);
  EXPECT_DOUBLE_EQ(c.get_double("aux_loss_coef"), 0.02);
  EXPECT_EQ(c.get_string("capacity_mode"), "CAPACITY_FIXED");
  // Text round trip: what comes out parses back to the same text.
  const std::string text = c.to_text();
  EXPECT_EQ(libswitch::Config::from_text(SW_CONFIG_MODEL, text).to_text(), text);

  // Train configs reach into their model by path.
  libswitch::Config t = libswitch::Config::train_default();
  t.set("model.num_experts", 4).set("steps", 7);
  EXPECT_EQ(t.get_int("model.num_experts"), 4);
  EXPECT_EQ(t.get_int("steps"), 7);
  sw_field_type type;
  ASSERT_SW_OK(sw_config_field_type(t.get(), "model", &type));
  EXPECT_EQ(type, SW_FIELD_MESSAGE);
  ASSERT_SW_OK(sw_config_field_type(t.get(), "optimizer", &type));
  EXPECT_EQ(type, SW_FIELD_ENUM);
  EXPECT_STATUS(sw_config_set_int(t.get(), "seed", -1), SW_ERR_OUT_OF_RANGE, "out of range");
  sw_config_kind kind;
  ASSERT_SW_OK(sw_config_kind_of(t.get(), &kind));
  EXPECT_EQ(kind, SW_CONFIG_TRAIN);
}

TEST(CApiConfig, BadFieldsAndValuesChangeNothing) {
  sw_config* c = nullptr;
  ASSERT_SW_OK(sw_config_preset("tiny", &c));
  char before[8192];
  ASSERT_SW_OK(sw_config_to_text(c, before, sizeof before, nullptr));
  EXPECT_STATUS(sw_config_set_int(c, "no_such_field", 1), SW_ERR_INVALID_ARGUMENT,
                "no field \"no_such_field\"");
  EXPECT_STATUS(sw_config_set_string(c, "num_experts", "8"), SW_ERR_INVALID_ARGUMENT,
                "is an integer, not a string");
  EXPECT_STATUS(sw_config_set_string(c, "activation", "SWISH"), SW_ERR_OUT_OF_RANGE,
                "\"SWISH\" is not a value of");
  EXPECT_STATUS(sw_config_set_int(c, "activation", 99), SW_ERR_OUT_OF_RANGE,
                "99 is not a value of");
  EXPECT_STATUS(sw_config_set_int(c, "num_experts.x", 1), SW_ERR_INVALID_ARGUMENT,
                "is not a message");
  EXPECT_STATUS(sw_config_get_bool(c, "d_model", nullptr), SW_ERR_INVALID_ARGUMENT, "");
  char after[8192];
  ASSERT_SW_OK(sw_config_to_text(c, after, sizeof after, nullptr));
  EXPECT_STREQ(before, after);

  // A setter does not validate; validation and every consumer do.
  ASSERT_SW_OK(sw_config_set_int(c, "num_experts", 0));
  EXPECT_STATUS(sw_config_validate(c), SW_ERR_INVALID_ARGUMENT, "num_experts");
  sw_model* m = nullptr;
  EXPECT_STATUS(sw_model_create(c, "cpu", 0, &m), SW_ERR_INVALID_ARGUMENT, "num_experts");
  EXPECT_EQ(m, nullptr);
  sw_config_destroy(c);

  EXPECT_STATUS(sw_config_from_text(SW_CONFIG_MODEL, "d_model: 64\nnum_experts: [", &c),
                SW_ERR_INVALID_ARGUMENT, "line 2");
  EXPECT_STATUS(sw_config_from_text(static_cast<sw_config_kind>(5), "", &c),
                SW_ERR_INVALID_ARGUMENT, "kind");
}

TEST(CApiConfig, StringBufferProtocol) {
  sw_config* c = nullptr;
  ASSERT_SW_OK(sw_config_preset("tiny", &c));
  size_t needed = 0;
  EXPECT_STATUS(sw_config_to_text(c, nullptr, 0, &needed), SW_ERR_INVALID_ARGUMENT, "too small");
  ASSERT_GT(needed, 100u);
  std::string text(needed, 'x');
  EXPECT_STATUS(sw_config_to_text(c, text.data(), needed - 1, nullptr), SW_ERR_INVALID_ARGUMENT,
                "too small");
  ASSERT_SW_OK(sw_config_to_text(c, text.data(), needed, nullptr));
  EXPECT_EQ(std::strlen(text.c_str()), needed - 1);
  EXPECT_NE(text.find("num_experts: 8"), std::string::npos);
  EXPECT_STATUS(sw_config_to_text(c, nullptr, 10, nullptr), SW_ERR_INVALID_ARGUMENT, "NULL");
  sw_config_destroy(c);
}

// sw_plan: the table and the Plan message for a request, the size asked for first; a bad
// request or format named.
TEST(CApiPlan, TableAndProtoAndRefusals) {
  size_t needed = 0;
  EXPECT_STATUS(sw_plan("gpus: 16", "table", nullptr, 0, &needed), SW_ERR_INVALID_ARGUMENT,
                "too small");
  std::string table(needed, '\0');
  ASSERT_SW_OK(sw_plan("gpus: 16", "table", table.data(), needed, nullptr));
  EXPECT_EQ(table.rfind("switch-base-8 (", 0), 0u) << table;
  EXPECT_NE(table.find("ep=16 does not divide the 8 experts"), std::string::npos);
  EXPECT_STATUS(
      sw_plan("gpus: 4 layout: 'ep=4' model_preset: 'tiny'", "proto", nullptr, 0, &needed),
      SW_ERR_INVALID_ARGUMENT, "too small");
  std::string proto(needed, '\0');
  ASSERT_SW_OK(sw_plan("gpus: 4 layout: 'ep=4' model_preset: 'tiny'", "proto", proto.data(), needed,
                       nullptr));
  EXPECT_NE(proto.find("layouts {\n  dp: 1\n  ep: 4\n  mp: 1\n  fits: true"), std::string::npos)
      << proto;
  char buf[256];
  EXPECT_STATUS(sw_plan("gpus: 0", "table", buf, sizeof buf, nullptr), SW_ERR_INVALID_ARGUMENT,
                "gpus must be >= 1, got 0");
  EXPECT_STATUS(sw_plan("gpu: 'v100'", "table", buf, sizeof buf, nullptr), SW_ERR_NOT_FOUND,
                "known: h200, h100, a100");
  EXPECT_STATUS(sw_plan("", "csv", buf, sizeof buf, nullptr), SW_ERR_INVALID_ARGUMENT,
                "format: 'csv' is not one of proto, table");
  EXPECT_STATUS(sw_plan(nullptr, "table", buf, sizeof buf, nullptr), SW_ERR_INVALID_ARGUMENT,
                "request_text is NULL");
}

// Every entry point refuses NULL handles and NULL out pointers by name, and never crashes.
TEST(CApiBadInput, NullHandlesAndOutPointers) {
  TinyBatch b;
  float f[4];
  int64_t i64 = 0;
  int i = 0;
  double d = 0;
  sw_config* c = nullptr;
  sw_model* m = nullptr;
  sw_result* r = nullptr;
  sw_trainer* t = nullptr;
  sw_metrics metrics;
  SW_INIT_STRUCT(&metrics);
  sw_routing_stats stats;
  SW_INIT_STRUCT(&stats);
  sw_generate_options g;
  SW_INIT_STRUCT(&g);
  char buf[16];
  int32_t ids[4];
  DLManagedTensor* dl = nullptr;
  const std::vector<std::pair<std::string, std::function<sw_status()>>> calls = {
      {"out", [&] { return sw_config_preset("tiny", nullptr); }},
      {"name", [&] { return sw_config_preset(nullptr, &c); }},
      {"text", [&] { return sw_config_from_text(SW_CONFIG_MODEL, nullptr, &c); }},
      {"config", [&] { return sw_config_clone(nullptr, &c); }},
      {"config", [&] { return sw_config_to_text(nullptr, buf, sizeof buf, nullptr); }},
      {"config", [&] { return sw_config_validate(nullptr); }},
      {"config", [&] { return sw_config_get_int(nullptr, "d_model", &i64); }},
      {"config", [&] { return sw_config_set_double(nullptr, "d_model", 1.0); }},
      {"config", [&] { return sw_model_create(nullptr, "cpu", 0, &m); }},
      {"model", [&] { return sw_model_parameter_count(nullptr, &i64); }},
      {"model", [&] { return sw_model_get_parameter(nullptr, "shared.weight", f, 4); }},
      {"model", [&] { return sw_model_set_parameter(nullptr, "shared.weight", f, 4); }},
      {"model", [&] { return sw_model_forward(nullptr, &b.view, 0, 0, &r); }},
      {"model", [&] { return sw_model_get_gradient(nullptr, "shared.weight", f, 4); }},
      {"model", [&] { return sw_model_set_threads(nullptr, 1); }},
      {"model", [&] { return sw_model_save(nullptr, "/tmp"); }},
      {"model", [&] { return sw_model_export_hf(nullptr, "/tmp"); }},
      {"model", [&] { return sw_model_load_parameters(nullptr, "/tmp", 1); }},
      {"model", [&] { return sw_model_generate(nullptr, &b.view, &g, ids, 4, &i64, 1); }},
      {"cancel", [&] { return sw_cancel_request(nullptr); }},
      {"cancel", [&] { return sw_cancel_reset(nullptr); }},
      {"cancel", [&] { return sw_cancel_is_requested(nullptr, &i); }},
      {"model",
       [&] {
         return sw_model_validate(nullptr, &b.view, "cuda:0", "f32", 0, buf, 16, nullptr, &i);
       }},
      {"model", [&] { return sw_trainer_create(nullptr, nullptr, &t); }},
      {"result", [&] { return sw_result_losses(nullptr, &d, &d, &d, &d); }},
      {"result", [&] { return sw_result_logits(nullptr, f, 4); }},
      {"result", [&] { return sw_result_routing(nullptr, 0, &stats, nullptr, 0); }},
      {"trainer", [&] { return sw_trainer_step(nullptr, nullptr, &metrics); }},
      {"trainer", [&] { return sw_trainer_evaluate(nullptr, nullptr, &metrics); }},
      {"trainer", [&] { return sw_trainer_save(nullptr, "/tmp/x"); }},
      {"trainer", [&] { return sw_trainer_model(nullptr, &m); }},
      {"path", [&] { return sw_trainer_restore(nullptr, "cpu", &t); }},
      {"path", [&] { return sw_model_load(nullptr, "cpu", &m); }},
      {"root", [&] { return sw_checkpoint_latest(nullptr, buf, sizeof buf, nullptr); }},
      {"config_json_path", [&] { return sw_model_import_hf(nullptr, "x", "cpu", &m); }},
      {"out", [&] { return sw_cuda_device_count(nullptr); }},
      {"model", [&] { return sw_model_parameter_dlpack(nullptr, "shared.weight", &dl); }},
      {"out", [&] { return sw_model_parameter_dlpack(m, "shared.weight", nullptr); }},
      {"model", [&] { return sw_model_gradient_dlpack(nullptr, "shared.weight", &dl); }},
      {"result", [&] { return sw_result_logits_dlpack(nullptr, &dl); }},
  };
  for (const auto& [argument, call] : calls) {
    EXPECT_STATUS(call(), SW_ERR_INVALID_ARGUMENT, argument + " is NULL");
  }
  EXPECT_EQ(c, nullptr);
  EXPECT_EQ(m, nullptr);
  EXPECT_EQ(r, nullptr);
  EXPECT_EQ(t, nullptr);
  EXPECT_EQ(dl, nullptr);
  // Destroying NULL is a no-op.
  sw_config_destroy(nullptr);
  sw_model_destroy(nullptr);
  sw_result_destroy(nullptr);
  sw_trainer_destroy(nullptr);
}

// Hostile values each entry point once accepted, or refused in words that did not say why.
TEST_F(CApi, HostileValuesAreNamed) {
  int64_t dims[4];
  int ndim = 0;
  EXPECT_STATUS(sw_model_parameter_shape(model_, "shared.weight", dims, -1, &ndim),
                SW_ERR_INVALID_ARGUMENT, "cap must be >= 0, got -1");
  sw_model* m = nullptr;
  EXPECT_STATUS(sw_model_create(config_, "cuda:12345", 0, &m), SW_ERR_INVALID_ARGUMENT,
                "the device index must be < 1024");
  EXPECT_EQ(m, nullptr);
  EXPECT_STATUS(sw_model_save(model_, ""), SW_ERR_INVALID_ARGUMENT,
                "checkpoint: the directory path is empty");
  EXPECT_STATUS(sw_model_load("", "cpu", &m), SW_ERR_INVALID_ARGUMENT,
                "checkpoint: the directory path is empty");
}

TEST_F(CApi, ParametersByName) {
  int64_t scalars = 0, tensors = 0;
  ASSERT_SW_OK(sw_model_parameter_count(model_, &scalars));
  ASSERT_SW_OK(sw_model_num_parameters(model_, &tensors));
  int64_t total = 0;
  for (int64_t i = 0; i < tensors; ++i) {
    char name[256];
    ASSERT_SW_OK(sw_model_parameter_name(model_, i, name, sizeof name, nullptr));
    int64_t dims[4];
    int ndim = 0;
    ASSERT_SW_OK(sw_model_parameter_shape(model_, name, dims, 4, &ndim));
    int64_t n = 1;
    for (int k = 0; k < ndim; ++k) n *= dims[k];
    total += n;
  }
  EXPECT_EQ(total, scalars);
  EXPECT_STATUS(sw_model_parameter_name(model_, tensors, nullptr, 0, nullptr), SW_ERR_OUT_OF_RANGE,
                "index");

  const char* name = "encoder.block.1.layer.1.mlp.router.classifier.weight";  // [E, d]
  int64_t dims[2];
  int ndim = 0;
  ASSERT_SW_OK(sw_model_parameter_shape(model_, name, dims, 2, &ndim));
  ASSERT_EQ(ndim, 2);
  std::vector<float> w(static_cast<size_t>(dims[0] * dims[1]));
  ASSERT_SW_OK(sw_model_get_parameter(model_, name, w.data(), w.size()));
  for (size_t k = 0; k < w.size(); ++k) w[k] = 0.001f * static_cast<float>(k);
  ASSERT_SW_OK(sw_model_set_parameter(model_, name, w.data(), w.size()));
  std::vector<float> back(w.size());
  ASSERT_SW_OK(sw_model_get_parameter(model_, name, back.data(), back.size()));
  EXPECT_EQ(back, w);

  EXPECT_STATUS(sw_model_get_parameter(model_, name, back.data(), back.size() - 1),
                SW_ERR_INVALID_ARGUMENT, "length " + std::to_string(back.size() - 1));
  EXPECT_STATUS(sw_model_set_parameter(model_, "no.such.weight", w.data(), w.size()),
                SW_ERR_NOT_FOUND, "no.such.weight");
  EXPECT_STATUS(sw_model_get_parameter(model_, name, nullptr, back.size()), SW_ERR_INVALID_ARGUMENT,
                "NULL");
}

// Models in a chosen dtype, copies across dtypes (own storage), and what cannot be made or
// trained named.
TEST_F(CApi, DtypesAndCopies) {
  sw_model* wide = nullptr;
  ASSERT_SW_OK(sw_model_create_with_dtype(config_, "cpu", "f64", 7, &wide));
  char dtype[8];
  ASSERT_SW_OK(sw_model_dtype(wide, dtype, sizeof dtype, nullptr));
  EXPECT_STREQ(dtype, "f64");
  sw_model* narrow = nullptr;
  ASSERT_SW_OK(sw_model_copy_to(wide, "cpu", "f32", &narrow));
  ASSERT_SW_OK(sw_model_dtype(narrow, dtype, sizeof dtype, nullptr));
  EXPECT_STREQ(dtype, "f32");
  // The f32 copy of the f64 model of seed 7 is the f32 model of seed 7, weight for weight.
  const char* name = "shared.weight";
  int64_t dims[2];
  int ndim = 0;
  ASSERT_SW_OK(sw_model_parameter_shape(model_, name, dims, 2, &ndim));
  std::vector<float> a(static_cast<size_t>(dims[0] * dims[1])), b(a.size());
  ASSERT_SW_OK(sw_model_get_parameter(model_, name, a.data(), a.size()));
  ASSERT_SW_OK(sw_model_get_parameter(narrow, name, b.data(), b.size()));
  EXPECT_EQ(a, b);
  // Its own storage: zeroing the copy leaves the original.
  std::vector<float> zeros(a.size(), 0.0f);
  ASSERT_SW_OK(sw_model_set_parameter(narrow, name, zeros.data(), zeros.size()));
  ASSERT_SW_OK(sw_model_get_parameter(wide, name, b.data(), b.size()));
  EXPECT_EQ(a, b);
  sw_model* m = nullptr;
  EXPECT_STATUS(sw_model_create_with_dtype(config_, "cpu", "fp16", 0, &m), SW_ERR_INVALID_ARGUMENT,
                "dtype: expected \"f32\", \"f64\" or \"bf16\"");
  EXPECT_STATUS(sw_model_create_with_dtype(config_, "cpu", "bf16", 0, &m), SW_ERR_UNSUPPORTED,
                "bf16");
  EXPECT_STATUS(sw_model_copy_to(wide, "cpu", nullptr, &m), SW_ERR_INVALID_ARGUMENT, "dtype");
  EXPECT_EQ(m, nullptr);
  sw_model_destroy(narrow);
  sw_model_destroy(wide);
}

TEST_F(CApi, DevicesAndThreads) {
  char device[16];
  ASSERT_SW_OK(sw_model_device(model_, device, sizeof device, nullptr));
  EXPECT_STREQ(device, "cpu");
  sw_model* m = nullptr;
  EXPECT_STATUS(sw_model_create(config_, "tpu", 0, &m), SW_ERR_INVALID_ARGUMENT, "\"tpu\"");
  int devices = 0;
  ASSERT_SW_OK(sw_cuda_device_count(&devices));
  if (!sw_cuda_built()) {
    EXPECT_STATUS(sw_model_create(config_, "cuda:0", 0, &m), SW_ERR_UNSUPPORTED,
                  "built without CUDA");
  } else if (devices == 0) {
    EXPECT_NE(sw_model_create(config_, "cuda:0", 0, &m), SW_OK);
  }
  EXPECT_EQ(m, nullptr);

  // The thread count changes nothing in the numbers of a forward pass.
  const std::vector<float> all = logits(model_, batch_.view);
  ASSERT_SW_OK(sw_model_set_threads(model_, 1));
  int threads = 0;
  ASSERT_SW_OK(sw_model_threads(model_, &threads));
  EXPECT_EQ(threads, 1);
  EXPECT_EQ(logits(model_, batch_.view), all);
  EXPECT_STATUS(sw_model_set_threads(model_, -1), SW_ERR_INVALID_ARGUMENT, "threads");
  // A thread count the machine cannot give is refused; it once ended the host process.
  EXPECT_STATUS(sw_model_set_threads(model_, INT_MAX), SW_ERR_INVALID_ARGUMENT,
                "threads must be in [0, 4096]");
  EXPECT_STATUS(sw_model_set_threads(model_, SW_MAX_THREADS + 1), SW_ERR_INVALID_ARGUMENT,
                "threads");
  ASSERT_SW_OK(sw_model_threads(model_, &threads));
  EXPECT_EQ(threads, 1);
}

// The C result against what the logits themselves say: CE from a log-softmax of the
// returned logits, and routing counts that cover every token.
TEST_F(CApi, ForwardLossesAndRoutingAgreeWithLogits) {
  sw_result* r = nullptr;
  ASSERT_SW_OK(sw_model_forward(model_, &batch_.view, 0, 0, &r));
  int64_t dims[3];
  ASSERT_SW_OK(sw_result_logits_shape(r, dims));
  EXPECT_EQ(dims[0], 2);
  EXPECT_EQ(dims[1], 4);
  EXPECT_EQ(dims[2], 384);
  std::vector<float> logits(static_cast<size_t>(dims[0] * dims[1] * dims[2]));
  ASSERT_SW_OK(sw_result_logits(r, logits.data(), logits.size()));
  double loss, ce, aux, z;
  ASSERT_SW_OK(sw_result_losses(r, &loss, &ce, &aux, &z));
  double sum = 0;
  for (int64_t t = 0; t < dims[0] * dims[1]; ++t) {
    const float* row = logits.data() + t * dims[2];
    double m = row[0], s = 0;
    for (int64_t v = 0; v < dims[2]; ++v) m = std::max(m, static_cast<double>(row[v]));
    for (int64_t v = 0; v < dims[2]; ++v) s += std::exp(row[v] - m);
    sum += m + std::log(s) - row[batch_.labels[static_cast<size_t>(t)]];
  }
  EXPECT_NEAR(ce, sum / 8.0, 1e-5 * ce);
  EXPECT_NEAR(loss, ce + aux + z, 1e-12);
  EXPECT_GT(aux, 0);
  EXPECT_GT(z, 0);

  int64_t layers = 0;
  ASSERT_SW_OK(sw_result_num_routing_layers(r, &layers));
  EXPECT_EQ(layers, 4);  // tiny: blocks 1 and 3 of each stack
  double aux_sum = 0;
  for (int64_t l = 0; l < layers; ++l) {
    sw_routing_stats s;
    SW_INIT_STRUCT(&s);
    std::vector<int64_t> counts(8);
    ASSERT_SW_OK(sw_result_routing(r, l, &s, counts.data(), counts.size()));
    int64_t routed = 0;
    for (int64_t n : counts) routed += n;
    EXPECT_EQ(routed, s.tokens);
    EXPECT_EQ(s.tokens, l < 2 ? 16 : 8);
    EXPECT_EQ(s.stack, l < 2 ? SW_ENCODER : SW_DECODER);
    EXPECT_EQ(s.block, l % 2 == 0 ? 1 : 3);
    EXPECT_EQ(s.num_experts, 8);
    aux_sum += s.aux_loss;
  }
  EXPECT_NEAR(aux_sum, aux, 1e-12);
  sw_routing_stats s;
  SW_INIT_STRUCT(&s);
  std::vector<int64_t> counts(8);
  EXPECT_STATUS(sw_result_routing(r, layers, &s, nullptr, 0), SW_ERR_OUT_OF_RANGE, "layer");
  EXPECT_STATUS(sw_result_routing(r, 0, &s, counts.data(), 7), SW_ERR_INVALID_ARGUMENT,
                "tokens_per_expert");
  s.struct_size = 4;
  EXPECT_STATUS(sw_result_routing(r, 0, &s, nullptr, 0), SW_ERR_INVALID_ARGUMENT, "struct_size");
  EXPECT_STATUS(sw_result_logits(r, logits.data(), logits.size() + 1), SW_ERR_INVALID_ARGUMENT,
                "length");
  sw_result_destroy(r);
}

TEST_F(CApi, BadBatchesAreRefusedByName) {
  sw_result* r = nullptr;
  TinyBatch b;
  b.input_ids[5] = 384;  // == vocab_size
  EXPECT_STATUS(sw_model_forward(model_, &b.view, 0, 0, &r), SW_ERR_OUT_OF_RANGE,
                "input_ids: token id 384");
  b.input_ids[5] = -3;
  EXPECT_STATUS(sw_model_forward(model_, &b.view, 0, 0, &r), SW_ERR_OUT_OF_RANGE, "-3");
  TinyBatch c;
  c.view.input_ids = nullptr;
  EXPECT_STATUS(sw_model_forward(model_, &c.view, 0, 0, &r), SW_ERR_INVALID_ARGUMENT,
                "batch->input_ids is NULL");
  TinyBatch e;
  e.view.batch = 0;
  EXPECT_STATUS(sw_model_forward(model_, &e.view, 0, 0, &r), SW_ERR_INVALID_ARGUMENT,
                "batch->batch must be >= 1");
  TinyBatch s;
  s.view.struct_size = 8;
  EXPECT_STATUS(sw_model_forward(model_, &s.view, 0, 0, &r), SW_ERR_INVALID_ARGUMENT,
                "struct_size");
  TinyBatch mask;
  std::vector<int32_t> bad_mask(16, 1);
  bad_mask[3] = 7;
  mask.view.attention_mask = bad_mask.data();
  EXPECT_STATUS(sw_model_forward(model_, &mask.view, 0, 0, &r), SW_ERR_INVALID_ARGUMENT,
                "attention_mask");
  TinyBatch bad_label;
  bad_label.labels[2] = 999;  // named as the batch's labels, not by an internal op
  EXPECT_STATUS(sw_model_forward(model_, &bad_label.view, 0, 0, &r), SW_ERR_OUT_OF_RANGE,
                "labels: label 999 at flat position 2 is outside the vocabulary [0, 384)");
  TinyBatch no_labels;
  no_labels.view.labels = nullptr;
  EXPECT_STATUS(sw_model_forward(model_, &no_labels.view, 0, 1, &r), SW_ERR_INVALID_ARGUMENT,
                "batch->labels is NULL");
  EXPECT_EQ(r, nullptr);
  // Without labels, a forward pass is fine and has no CE.
  ASSERT_SW_OK(sw_model_forward(model_, &no_labels.view, 0, 0, &r));
  double ce = -1;
  ASSERT_SW_OK(sw_result_losses(r, nullptr, &ce, nullptr, nullptr));
  EXPECT_EQ(ce, 0.0);
  sw_result_destroy(r);
}

// Gradients through the C ABI against central differences of the C ABI's own loss.
TEST_F(CApi, GradientsMatchFiniteDifferences) {
  float g[4];
  EXPECT_STATUS(sw_model_get_gradient(model_, "shared.weight", g, 4), SW_ERR_NOT_FOUND,
                "no gradients yet");
  sw_result* r = nullptr;
  ASSERT_SW_OK(sw_model_forward(model_, &batch_.view, 0, 1, &r));
  sw_result_destroy(r);
  for (const char* name : {"decoder.block.0.layer.2.mlp.wo.weight",
                           "encoder.block.1.layer.1.mlp.experts.expert_0.wi.weight",
                           "encoder.block.1.layer.1.mlp.router.classifier.weight"}) {
    int64_t dims[2];
    int ndim = 0;
    ASSERT_SW_OK(sw_model_parameter_shape(model_, name, dims, 2, &ndim)) << name;
    std::vector<float> w(static_cast<size_t>(dims[0] * dims[1])), grad(w.size());
    ASSERT_SW_OK(sw_model_get_parameter(model_, name, w.data(), w.size()));
    ASSERT_SW_OK(sw_model_get_gradient(model_, name, grad.data(), grad.size()));
    // The entry with the largest gradient: the best signal against f32 rounding.
    size_t k = 0;
    for (size_t j = 0; j < grad.size(); ++j)
      if (std::fabs(grad[j]) > std::fabs(grad[k])) k = j;
    ASSERT_GT(std::fabs(grad[k]), 1e-4) << name;
    const float h = 1e-2f * std::max(1.0f, std::fabs(w[k]));
    std::vector<float> moved = w;
    moved[k] = w[k] + h;
    ASSERT_SW_OK(sw_model_set_parameter(model_, name, moved.data(), moved.size()));
    const double up = loss(model_, batch_.view);
    moved[k] = w[k] - h;
    ASSERT_SW_OK(sw_model_set_parameter(model_, name, moved.data(), moved.size()));
    const double down = loss(model_, batch_.view);
    ASSERT_SW_OK(sw_model_set_parameter(model_, name, w.data(), w.size()));
    const double numeric = (up - down) / (2.0 * (w[k] + h - w[k]));
    EXPECT_NEAR(grad[k], numeric, 0.05 * std::fabs(numeric) + 1e-4) << name << "[" << k << "]";
  }
}

// DLPack views: the parameter itself (no copy: two views share one address, writes either
// way show), the memory alive after the model is destroyed (AddressSanitizer checks this
// in scripts/test-sanitizers), the logits and gradients equal to the copying calls.
TEST_F(CApi, DlpackViewsAreTheTensorsAndOutliveTheirOwners) {
  const char* name = "encoder.block.1.layer.1.mlp.experts.expert_0.wi.weight";
  int64_t dims[2];
  int ndim = 0;
  ASSERT_SW_OK(sw_model_parameter_shape(model_, name, dims, 2, &ndim));
  const size_t n = static_cast<size_t>(dims[0] * dims[1]);
  DLManagedTensor* view = nullptr;
  DLManagedTensor* again = nullptr;
  ASSERT_SW_OK(sw_model_parameter_dlpack(model_, name, &view));
  ASSERT_SW_OK(sw_model_parameter_dlpack(model_, name, &again));
  const DLTensor& t = view->dl_tensor;
  EXPECT_EQ(t.device.device_type, kDLCPU);
  EXPECT_EQ(t.dtype.code, kDLFloat);
  EXPECT_EQ(t.dtype.bits, 32);
  EXPECT_EQ(t.dtype.lanes, 1);
  ASSERT_EQ(t.ndim, 2);
  EXPECT_EQ(t.shape[0], dims[0]);
  EXPECT_EQ(t.shape[1], dims[1]);
  EXPECT_EQ(t.strides, nullptr);
  EXPECT_EQ(t.byte_offset, 0u);
  EXPECT_EQ(t.data, again->dl_tensor.data);
  again->deleter(again);
  float* data = static_cast<float*>(t.data);
  std::vector<float> copy(n);
  ASSERT_SW_OK(sw_model_get_parameter(model_, name, copy.data(), n));
  EXPECT_TRUE(std::equal(copy.begin(), copy.end(), data));
  std::vector<float> halves(n, 0.5f);
  ASSERT_SW_OK(sw_model_set_parameter(model_, name, halves.data(), n));
  EXPECT_EQ(data[n - 1], 0.5f);
  data[0] = 42.0f;
  ASSERT_SW_OK(sw_model_get_parameter(model_, name, copy.data(), n));
  EXPECT_EQ(copy[0], 42.0f);

  DLManagedTensor* grad = nullptr;
  EXPECT_STATUS(sw_model_gradient_dlpack(model_, name, &grad), SW_ERR_NOT_FOUND,
                "no gradients yet");
  EXPECT_STATUS(sw_model_parameter_dlpack(model_, "no.such.weight", &grad), SW_ERR_NOT_FOUND,
                "no.such.weight");
  EXPECT_EQ(grad, nullptr);
  sw_result* r = nullptr;
  ASSERT_SW_OK(sw_model_forward(model_, &batch_.view, 0, 1, &r));
  ASSERT_SW_OK(sw_model_gradient_dlpack(model_, name, &grad));
  std::vector<float> grad_copy(n);
  ASSERT_SW_OK(sw_model_get_gradient(model_, name, grad_copy.data(), n));
  EXPECT_TRUE(std::equal(grad_copy.begin(), grad_copy.end(),
                         static_cast<const float*>(grad->dl_tensor.data)));
  DLManagedTensor* logits = nullptr;
  ASSERT_SW_OK(sw_result_logits_dlpack(r, &logits));
  int64_t ldims[3];
  ASSERT_SW_OK(sw_result_logits_shape(r, ldims));
  ASSERT_EQ(logits->dl_tensor.ndim, 3);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(logits->dl_tensor.shape[i], ldims[i]);
  std::vector<float> logits_copy(static_cast<size_t>(ldims[0] * ldims[1] * ldims[2]));
  ASSERT_SW_OK(sw_result_logits(r, logits_copy.data(), logits_copy.size()));
  sw_result_destroy(r);
  sw_model_destroy(model_);
  model_ = nullptr;
  // The owners are gone; the views still read what they held.
  EXPECT_EQ(data[0], 42.0f);
  EXPECT_EQ(data[n - 1], 0.5f);
  EXPECT_TRUE(std::equal(grad_copy.begin(), grad_copy.end(),
                         static_cast<const float*>(grad->dl_tensor.data)));
  EXPECT_TRUE(std::equal(logits_copy.begin(), logits_copy.end(),
                         static_cast<const float*>(logits->dl_tensor.data)));
  view->deleter(view);
  grad->deleter(grad);
  logits->deleter(logits);

  // An f64 model's views say so.
  sw_model* wide = nullptr;
  ASSERT_SW_OK(sw_model_create_with_dtype(config_, "cpu", "f64", 7, &wide));
  ASSERT_SW_OK(sw_model_parameter_dlpack(wide, name, &view));
  EXPECT_EQ(view->dl_tensor.dtype.code, kDLFloat);
  EXPECT_EQ(view->dl_tensor.dtype.bits, 64);
  view->deleter(view);
  sw_model_destroy(wide);
}

// Concurrent forward passes on one model give the numbers a lone one does.
TEST_F(CApi, ConcurrentForwardPassesOnOneModel) {
  const std::vector<float> expected = logits(model_, batch_.view);
  std::vector<std::vector<float>> got(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i)
    threads.emplace_back([&, i] {
      for (int rep = 0; rep < 3; ++rep) got[i] = logits(model_, batch_.view);
    });
  for (auto& t : threads) t.join();
  for (const auto& g : got) EXPECT_EQ(g, expected);
}

// A writer between readers: every forward sees the old parameters or the new, never a mix.
TEST_F(CApi, ParameterWritesAreAtomicForConcurrentReaders) {
  const char* name = "shared.weight";
  std::vector<float> a(384 * 64), b;
  ASSERT_SW_OK(sw_model_get_parameter(model_, name, a.data(), a.size()));
  b = a;
  for (float& x : b) x *= 0.5f;
  const std::vector<float> logits_a = logits(model_, batch_.view);
  ASSERT_SW_OK(sw_model_set_parameter(model_, name, b.data(), b.size()));
  const std::vector<float> logits_b = logits(model_, batch_.view);
  ASSERT_NE(logits_a, logits_b);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 20; ++i)
      EXPECT_EQ(sw_model_set_parameter(model_, name, (i % 2 ? b : a).data(), a.size()), SW_OK);
    done = true;
  });
  std::vector<std::thread> readers;
  std::atomic<int> mixed{0}, reads{0};
  for (int r = 0; r < 2; ++r)
    readers.emplace_back([&] {
      while (!done) {
        const std::vector<float> got = logits(model_, batch_.view);
        mixed += got != logits_a && got != logits_b;
        ++reads;
      }
    });
  writer.join();
  for (auto& t : readers) t.join();
  EXPECT_EQ(mixed, 0) << "of " << reads << " reads";
}

// Structs from a newer caller (larger struct_size) work, and nothing past this version's
// fields is written; train-mode forwards draw new noise each call.
TEST_F(CApi, StructSizesAndTrainModeNoise) {
  struct Newer {
    sw_routing_stats stats;
    unsigned char extra[16];
  } newer;
  std::memset(&newer, 0xab, sizeof newer);
  newer.stats.struct_size = sizeof newer;
  sw_result* r = nullptr;
  ASSERT_SW_OK(sw_model_forward(model_, &batch_.view, 0, 0, &r));
  ASSERT_SW_OK(sw_result_routing(r, 0, &newer.stats, nullptr, 0));
  EXPECT_EQ(newer.stats.struct_size, sizeof newer);
  EXPECT_EQ(newer.stats.num_experts, 8);
  for (unsigned char c : newer.extra) EXPECT_EQ(c, 0xab);
  sw_result_destroy(r);

  sw_config* noisy = nullptr;
  ASSERT_SW_OK(sw_config_preset("tiny", &noisy));  // dropout 0.1
  sw_model* m = nullptr;
  ASSERT_SW_OK(sw_model_create(noisy, "cpu", 1, &m));
  double first = 0, second = 0, eval1 = 0, eval2 = 0;
  ASSERT_SW_OK(sw_model_forward(m, &batch_.view, 1, 0, &r));
  sw_result_losses(r, &first, nullptr, nullptr, nullptr);
  sw_result_destroy(r);
  ASSERT_SW_OK(sw_model_forward(m, &batch_.view, 1, 0, &r));
  sw_result_losses(r, &second, nullptr, nullptr, nullptr);
  sw_result_destroy(r);
  EXPECT_NE(first, second);
  eval1 = loss(m, batch_.view);
  eval2 = loss(m, batch_.view);
  EXPECT_EQ(eval1, eval2);
  sw_model_destroy(m);
  sw_config_destroy(noisy);
}

TEST_F(CApi, TrainerStepsOnCallerBatchesLowerTheLoss) {
  sw_config* train = nullptr;
  ASSERT_SW_OK(sw_config_from_text(
      SW_CONFIG_TRAIN, "optimizer: ADAMW learning_rate: 0.003 schedule: CONSTANT batch_size: 2",
      &train));
  sw_trainer* trainer = nullptr;
  EXPECT_STATUS(sw_trainer_create(model_, config_, &trainer), SW_ERR_INVALID_ARGUMENT,
                "a train config is needed");
  sw_config* hf = nullptr;
  ASSERT_SW_OK(sw_config_clone(config_, &hf));
  ASSERT_SW_OK(sw_config_set_string(hf, "aux_loss_mode", "AUX_HF_CONCAT"));
  sw_model* hf_model = nullptr;
  ASSERT_SW_OK(sw_model_create(hf, "cpu", 0, &hf_model));
  EXPECT_STATUS(sw_trainer_create(hf_model, train, &trainer), SW_ERR_UNSUPPORTED, "AUX_PER_LAYER");
  sw_model_destroy(hf_model);
  sw_config_destroy(hf);
  // A device in the train config must be where the model is.
  sw_config* elsewhere = nullptr;
  ASSERT_SW_OK(sw_config_clone(train, &elsewhere));
  ASSERT_SW_OK(sw_config_set_string(elsewhere, "device", "cuda:0"));
  EXPECT_STATUS(sw_trainer_create(model_, elsewhere, &trainer), SW_ERR_INVALID_ARGUMENT,
                "device cuda:0, but the model is on cpu");
  sw_config_destroy(elsewhere);
  // device_transport moves a GPU model's tensors: on a cpu model it is refused, not ignored.
  sw_config* staged = nullptr;
  ASSERT_SW_OK(sw_config_clone(train, &staged));
  ASSERT_SW_OK(sw_config_set_string(staged, "device_transport", "STAGED"));
  EXPECT_STATUS(sw_trainer_create(model_, staged, &trainer), SW_ERR_INVALID_ARGUMENT,
                "device_transport STAGED moves device tensors between ranks, and the model is on "
                "cpu");
  sw_config_destroy(staged);
  ASSERT_SW_OK(sw_trainer_create(model_, train, &trainer));
  // The trainer keeps the model alive: this handle may go.
  sw_model_destroy(model_);
  model_ = nullptr;
  sw_metrics first, m;
  SW_INIT_STRUCT(&first);
  SW_INIT_STRUCT(&m);
  ASSERT_SW_OK(sw_trainer_step(trainer, &batch_.view, &first));
  for (int i = 0; i < 9; ++i) ASSERT_SW_OK(sw_trainer_step(trainer, &batch_.view, &m));
  EXPECT_EQ(first.step, 1);
  EXPECT_EQ(m.step, 10);
  EXPECT_GT(first.grad_norm, 0);
  EXPECT_DOUBLE_EQ(m.learning_rate, 0.003);
  EXPECT_EQ(m.tokens, 24);
  EXPECT_LT(m.loss, first.loss - 0.5);
  sw_metrics eval;
  SW_INIT_STRUCT(&eval);
  ASSERT_SW_OK(sw_trainer_evaluate(trainer, &batch_.view, &eval));
  EXPECT_EQ(eval.step, 10);
  EXPECT_LT(eval.loss, first.loss);

  TinyBatch unlabelled;
  unlabelled.view.labels = nullptr;
  EXPECT_STATUS(sw_trainer_step(trainer, &unlabelled.view, &m), SW_ERR_INVALID_ARGUMENT, "labels");
  m.struct_size = 3;
  EXPECT_STATUS(sw_trainer_step(trainer, &batch_.view, &m), SW_ERR_INVALID_ARGUMENT, "struct_size");
  sw_model* trained = nullptr;
  ASSERT_SW_OK(sw_trainer_model(trainer, &trained));
  sw_trainer_destroy(trainer);
  EXPECT_NEAR(loss(trained, batch_.view), eval.loss, 1e-9);
  sw_model_destroy(trained);
  sw_config_destroy(train);
}

// Distillation through the C ABI: a train config naming a saved teacher starts a dense
// student from the teacher's shared weights and mixes its probabilities into the loss; a
// teacher of another vocabulary is refused by name.
TEST_F(CApi, TrainerDistillsFromASavedTeacher) {
  TempDir dir;
  ASSERT_SW_OK(sw_model_save(model_, dir.path.c_str()));  // the tiny Switch model as teacher
  sw_config* dense = nullptr;
  ASSERT_SW_OK(sw_config_clone(config_, &dense));
  ASSERT_SW_OK(sw_config_set_int(dense, "encoder_sparse_step", 0));
  ASSERT_SW_OK(sw_config_set_int(dense, "decoder_sparse_step", 0));
  sw_model *student = nullptr, *plain = nullptr;
  ASSERT_SW_OK(sw_model_create(dense, "cpu", 11, &student));
  ASSERT_SW_OK(sw_model_create(dense, "cpu", 11, &plain));
  const std::string text =
      "optimizer: ADAMW schedule: CONSTANT batch_size: 2 distill_teacher: '" + dir.path + "'";
  sw_config* train = nullptr;
  ASSERT_SW_OK(sw_config_from_text(SW_CONFIG_TRAIN, text.c_str(), &train));
  sw_trainer* trainer = nullptr;
  ASSERT_SW_OK(sw_trainer_create(student, train, &trainer));
  std::vector<float> t(384 * 64), s(384 * 64);
  ASSERT_SW_OK(sw_model_get_parameter(model_, "shared.weight", t.data(), t.size()));
  ASSERT_SW_OK(sw_model_get_parameter(student, "shared.weight", s.data(), s.size()));
  EXPECT_EQ(s, t);  // started from the teacher's embedding
  sw_config* plain_train = nullptr;
  ASSERT_SW_OK(sw_config_from_text(
      SW_CONFIG_TRAIN, "optimizer: ADAMW schedule: CONSTANT batch_size: 2", &plain_train));
  sw_trainer* plain_trainer = nullptr;
  ASSERT_SW_OK(sw_trainer_create(plain, plain_train, &plain_trainer));
  ASSERT_SW_OK(sw_model_set_parameter(plain, "shared.weight", t.data(), t.size()));
  sw_metrics distilled, ordinary;
  SW_INIT_STRUCT(&distilled);
  SW_INIT_STRUCT(&ordinary);
  ASSERT_SW_OK(sw_trainer_step(trainer, &batch_.view, &distilled));
  ASSERT_SW_OK(sw_trainer_step(plain_trainer, &batch_.view, &ordinary));
  EXPECT_GT(std::fabs(distilled.loss - ordinary.loss), 1e-3);  // the teacher's share
  sw_trainer_destroy(trainer);
  sw_trainer_destroy(plain_trainer);
  // Another vocabulary: named.
  ASSERT_SW_OK(sw_config_set_int(dense, "vocab_size", 640));
  sw_model* other = nullptr;
  ASSERT_SW_OK(sw_model_create(dense, "cpu", 11, &other));
  EXPECT_STATUS(sw_trainer_create(other, train, &trainer), SW_ERR_INVALID_ARGUMENT,
                "the teacher's vocabulary (384) is not the student's (640)");
  for (sw_model* m : {student, plain, other}) sw_model_destroy(m);
  for (sw_config* c : {dense, train, plain_train}) sw_config_destroy(c);
}

// Training a GPU model through the C ABI: the same steps as a cpu copy of it within 1e-5,
// a checkpoint saved from the device that restores on the cpu and on the GPU. Skipped
// without a CUDA device.
TEST_F(CApi, TrainsOnAGpuAndRestoresOnEitherDevice) {
  int devices = 0;
  ASSERT_SW_OK(sw_cuda_device_count(&devices));
  if (devices == 0) GTEST_SKIP() << "no CUDA device";
  sw_config* train = nullptr;
  ASSERT_SW_OK(sw_config_from_text(SW_CONFIG_TRAIN, "optimizer: ADAMW batch_size: 2", &train));
  sw_model* gpu_model = nullptr;
  ASSERT_SW_OK(sw_model_copy_to(model_, "cuda:0", "f32", &gpu_model));
  sw_trainer *on_gpu = nullptr, *on_cpu = nullptr;
  ASSERT_SW_OK(sw_trainer_create(gpu_model, train, &on_gpu));
  ASSERT_SW_OK(sw_trainer_create(model_, train, &on_cpu));
  sw_metrics g, c;
  SW_INIT_STRUCT(&g);
  SW_INIT_STRUCT(&c);
  for (int i = 0; i < 3; ++i) {
    ASSERT_SW_OK(sw_trainer_step(on_gpu, &batch_.view, &g));
    ASSERT_SW_OK(sw_trainer_step(on_cpu, &batch_.view, &c));
    EXPECT_NEAR(g.loss, c.loss, 1e-5 * c.loss) << i;
  }
  TempDir dir;
  ASSERT_SW_OK(sw_trainer_save(on_gpu, dir.path.c_str()));
  for (const char* device : {"cpu", "cuda:0"}) {
    sw_trainer* restored = nullptr;
    ASSERT_SW_OK(sw_trainer_restore(dir.path.c_str(), device, &restored));
    sw_metrics r;
    SW_INIT_STRUCT(&r);
    ASSERT_SW_OK(sw_trainer_step(restored, &batch_.view, &r));
    EXPECT_EQ(r.step, 4) << device;
    sw_trainer_destroy(restored);
  }
  sw_trainer_destroy(on_gpu);
  sw_trainer_destroy(on_cpu);
  sw_model_destroy(gpu_model);
  sw_config_destroy(train);
}

TEST_F(CApi, CheckpointsSaveLoadAndRefuseCorruption) {
  TempDir dir;
  char path[4096];
  EXPECT_STATUS(sw_checkpoint_latest(dir.path.c_str(), path, sizeof path, nullptr),
                SW_ERR_NOT_FOUND, "");
  ASSERT_SW_OK(sw_model_save(model_, dir.path.c_str()));
  ASSERT_SW_OK(sw_checkpoint_latest(dir.path.c_str(), path, sizeof path, nullptr));
  sw_model* loaded = nullptr;
  ASSERT_SW_OK(sw_model_load(dir.path.c_str(), "cpu", &loaded));
  EXPECT_EQ(logits(loaded, batch_.view), logits(model_, batch_.view));
  uint64_t seed = 0;
  ASSERT_SW_OK(sw_model_seed(loaded, &seed));
  EXPECT_EQ(seed, 7u);

  // Strict loading into another architecture is refused; partial loads what matches.
  sw_config* wider = nullptr;
  ASSERT_SW_OK(sw_config_clone(config_, &wider));
  ASSERT_SW_OK(sw_config_set_int(wider, "num_decoder_layers", 2));
  sw_model* other = nullptr;
  ASSERT_SW_OK(sw_model_create(wider, "cpu", 1, &other));
  EXPECT_STATUS(sw_model_load_parameters(other, path, 1), SW_ERR_INVALID_ARGUMENT,
                "decoder.block.2");
  ASSERT_SW_OK(sw_model_load_parameters(other, path, 0));
  std::vector<float> a(384 * 64), b(384 * 64);
  ASSERT_SW_OK(sw_model_get_parameter(other, "shared.weight", a.data(), a.size()));
  ASSERT_SW_OK(sw_model_get_parameter(model_, "shared.weight", b.data(), b.size()));
  EXPECT_EQ(a, b);
  sw_model_destroy(other);
  sw_config_destroy(wider);

  // One flipped byte in a shard: refused, naming what is corrupt, and nothing loaded.
  std::string shard;
  for (const auto& entry : fs::directory_iterator(path))
    if (entry.path().extension() == ".bin") shard = entry.path();
  ASSERT_FALSE(shard.empty());
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1000);
    f.put('\x5a');
  }
  sw_model* corrupt = nullptr;
  const sw_status s = sw_model_load(path, "cpu", &corrupt);
  EXPECT_EQ(s, SW_ERR_CORRUPT) << sw_last_error();
  EXPECT_NE(std::string(sw_last_error()).find("checksum"), std::string::npos) << sw_last_error();
  EXPECT_EQ(corrupt, nullptr);
  const std::vector<float> before = logits(loaded, batch_.view);
  EXPECT_EQ(sw_model_load_parameters(loaded, path, 1), SW_ERR_CORRUPT);
  EXPECT_EQ(logits(loaded, batch_.view), before);
  EXPECT_STATUS(sw_model_load("/nonexistent/checkpoint", "cpu", &corrupt), SW_ERR_NOT_FOUND,
                "/nonexistent/checkpoint");
  sw_model_destroy(loaded);
}

TEST_F(CApi, HuggingFaceRoundTrip) {
  TempDir dir;
  // `tiny` routes with a capacity factor, which transformers cannot reproduce: refused,
  // naming the setting, unless asked for.
  EXPECT_STATUS(sw_model_export_hf(model_, dir.path.c_str()), SW_ERR_UNSUPPORTED,
                "capacity_mode CAPACITY_FACTOR");
  EXPECT_STATUS(sw_model_export_hf_with(model_, dir.path.c_str(), 2), SW_ERR_INVALID_ARGUMENT,
                "allow_routing_change");
  ASSERT_SW_OK(sw_model_export_hf_with(model_, dir.path.c_str(), 1));
  sw_model* imported = nullptr;
  const std::string config = dir.path + "/config.json";
  ASSERT_SW_OK(sw_model_import_hf(config.c_str(), dir.path.c_str(), "cpu", &imported));
  EXPECT_EQ(logits(imported, batch_.view), logits(model_, batch_.view));
  sw_model_destroy(imported);
  EXPECT_STATUS(sw_model_import_hf("/nonexistent.json", dir.path.c_str(), "cpu", &imported),
                SW_ERR_NOT_FOUND, "/nonexistent.json");
  // An HF import trains once its loss mode is overridden (the HF modes have no backward).
  sw_result* r = nullptr;
  ASSERT_SW_OK(sw_model_import_hf(config.c_str(), dir.path.c_str(), "cpu", &imported));
  EXPECT_STATUS(sw_model_forward(imported, &batch_.view, 1, 1, &r), SW_ERR_UNSUPPORTED,
                "AUX_PER_LAYER");
  sw_model_destroy(imported);
  ASSERT_SW_OK(sw_model_import_hf_with(config.c_str(), dir.path.c_str(), "cpu",
                                       "aux_loss_mode: AUX_PER_LAYER", &imported));
  ASSERT_SW_OK(sw_model_forward(imported, &batch_.view, 1, 1, &r));
  sw_result_destroy(r);
  sw_model_destroy(imported);
  imported = nullptr;
  EXPECT_STATUS(sw_model_import_hf_with(config.c_str(), dir.path.c_str(), "cpu",
                                        "aux_loss_mode: NO_SUCH_MODE", &imported),
                SW_ERR_INVALID_ARGUMENT, "model_overrides");
  EXPECT_STATUS(
      sw_model_import_hf_with(config.c_str(), dir.path.c_str(), "cpu", "d_model: 16", &imported),
      SW_ERR_INVALID_ARGUMENT, "shared.weight");
  EXPECT_EQ(imported, nullptr);
}

TEST_F(CApi, GreedyGeneration) {
  sw_generate_options o;
  SW_INIT_STRUCT(&o);
  o.max_new_tokens = 5;
  o.num_beams = 1;
  std::vector<int32_t> ids(10, -1);
  std::vector<int64_t> lengths(2, -1);
  ASSERT_SW_OK(sw_model_generate(model_, &batch_.view, &o, ids.data(), ids.size(), lengths.data(),
                                 lengths.size()));
  for (size_t row = 0; row < 2; ++row) {
    ASSERT_GE(lengths[row], 0);
    ASSERT_LE(lengths[row], 5);
    for (int64_t k = 0; k < 5; ++k) {
      const int32_t id = ids[row * 5 + static_cast<size_t>(k)];
      if (k < lengths[row])
        EXPECT_TRUE(id != 1 && id >= 0 && id < 384) << id;  // eos ends a row, unwritten
      else
        EXPECT_EQ(id, 0);
    }
  }
  // Generation is a function of the inputs: the same ids again.
  std::vector<int32_t> again(10);
  ASSERT_SW_OK(sw_model_generate(model_, &batch_.view, &o, again.data(), again.size(),
                                 lengths.data(), lengths.size()));
  EXPECT_EQ(again, ids);
  EXPECT_STATUS(sw_model_generate(model_, &batch_.view, &o, ids.data(), 9, lengths.data(), 2),
                SW_ERR_INVALID_ARGUMENT, "out_ids: length 9 given, 10 needed");
  // Requests that could not end, or would grow without bound, are refused by name.
  for (const int64_t too_many : {int64_t{SW_MAX_NEW_TOKENS} + 1, int64_t{1000000000}}) {
    o.max_new_tokens = too_many;
    EXPECT_STATUS(sw_model_generate(model_, &batch_.view, &o, ids.data(), 10, lengths.data(), 2),
                  SW_ERR_INVALID_ARGUMENT, "max_new_tokens must be in [1, 65536]");
  }
  o.max_new_tokens = 5;
  for (const int64_t beams : {int64_t{-1}, int64_t{SW_MAX_BEAMS} + 1, int64_t{1000000000}}) {
    o.num_beams = beams;
    EXPECT_STATUS(sw_model_generate(model_, &batch_.view, &o, ids.data(), 10, lengths.data(), 2),
                  SW_ERR_INVALID_ARGUMENT, "num_beams");
  }
  o.num_beams = 4;  // beam search
  ASSERT_SW_OK(sw_model_generate(model_, &batch_.view, &o, ids.data(), 10, lengths.data(), 2));
  o.num_beams = 1;
  o.temperature = 0.8;  // sampling: the same seed, the same tokens
  o.seed = 5;
  ASSERT_SW_OK(sw_model_generate(model_, &batch_.view, &o, ids.data(), 10, lengths.data(), 2));
  ASSERT_SW_OK(sw_model_generate(model_, &batch_.view, &o, again.data(), 10, lengths.data(), 2));
  EXPECT_EQ(again, ids);
  o.temperature = -1;
  EXPECT_STATUS(sw_model_generate(model_, &batch_.view, &o, ids.data(), 10, lengths.data(), 2),
                SW_ERR_INVALID_ARGUMENT, "temperature");
}

// A request that would run for minutes stops within a step of being cancelled from
// another thread, leaving the outputs alone; the flag stays set until reset.
TEST_F(CApi, GenerationIsCancelledFromAnotherThread) {
  sw_cancel* cancel = nullptr;
  ASSERT_SW_OK(sw_cancel_create(&cancel));
  int requested = -1;
  ASSERT_SW_OK(sw_cancel_is_requested(cancel, &requested));
  EXPECT_EQ(requested, 0);
  sw_generate_options o;
  SW_INIT_STRUCT(&o);
  o.max_new_tokens = SW_MAX_NEW_TOKENS;
  o.min_new_tokens = SW_MAX_NEW_TOKENS;  // eos cannot end a row: only cancelling stops it
  o.cancel = cancel;
  std::vector<int32_t> ids(2 * static_cast<size_t>(SW_MAX_NEW_TOKENS), -7);
  std::vector<int64_t> lengths(2, -7);
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(sw_cancel_request(cancel), SW_OK);
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_STATUS(sw_model_generate(model_, &batch_.view, &o, ids.data(), ids.size(), lengths.data(),
                                  lengths.size()),
                SW_ERR_CANCELLED, "generate: cancelled after");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  canceller.join();
  // 2,000 steps take seconds here (docs/PERF.md) and a step grows with the length.
  EXPECT_LT(seconds, 60.0) << "65536 steps ran to the end";
  EXPECT_TRUE(std::all_of(ids.begin(), ids.end(), [](int32_t id) { return id == -7; }));
  EXPECT_EQ(lengths, std::vector<int64_t>(2, -7));
  ASSERT_SW_OK(sw_cancel_is_requested(cancel, &requested));
  EXPECT_EQ(requested, 1);
  // Still requested: the next call stops before its first step.
  o.max_new_tokens = o.min_new_tokens = 3;
  EXPECT_STATUS(sw_model_generate(model_, &batch_.view, &o, ids.data(), 6, lengths.data(), 2),
                SW_ERR_CANCELLED, "cancelled after 0 of at most 3");
  EXPECT_STREQ(sw_status_string(SW_ERR_CANCELLED), "SW_ERR_CANCELLED");
  ASSERT_SW_OK(sw_cancel_reset(cancel));
  ASSERT_SW_OK(sw_model_generate(model_, &batch_.view, &o, ids.data(), 6, lengths.data(), 2));
  EXPECT_EQ(lengths, std::vector<int64_t>(2, 3));
  // The C++ wrapper takes the same options, cancel included.
  libswitch::Model model(libswitch::Config::preset("tiny"), "cpu", 0);
  libswitch::Batch batch;
  batch.batch = 1, batch.input_len = 4, batch.target_len = 1;
  batch.input_ids = {5, 6, 7, 8};
  batch.decoder_input_ids = {0};
  o.num_beams = 2;
  EXPECT_EQ(model.generate(batch, o).at(0).size(), 3u);
  ASSERT_SW_OK(sw_cancel_request(cancel));
  try {
    model.generate(batch, o);
    ADD_FAILURE() << "the C++ wrapper ignored the cancel";
  } catch (const libswitch::Error& e) {
    EXPECT_EQ(e.status(), SW_ERR_CANCELLED);
  }
  sw_cancel_destroy(cancel);
}

TEST_F(CApi, ValidateSaysWhyWithoutADevice) {
  int devices = 0;
  ASSERT_SW_OK(sw_cuda_device_count(&devices));
  if (devices > 0) GTEST_SKIP() << "a CUDA device is present (the parity tests cover it)";
  int within = -1;
  const sw_status s =
      sw_model_validate(model_, &batch_.view, "cuda:0", "f32", 0, nullptr, 0, nullptr, &within);
  EXPECT_NE(s, SW_OK);
  EXPECT_EQ(within, -1);
  EXPECT_STATUS(
      sw_model_validate(model_, &batch_.view, "cuda:0", "f16", 0, nullptr, 0, nullptr, &within),
      SW_ERR_INVALID_ARGUMENT, "dtype");
  EXPECT_STATUS(
      sw_model_validate(model_, &batch_.view, "cpu", "f32", 0, nullptr, 0, nullptr, &within),
      SW_ERR_INVALID_ARGUMENT, "must not be the cpu");
}

// The built-in data pipeline, a checkpoint, and a trainer restored from it that continues
// with exactly the losses of a run that never stopped.
TEST(CApiTrainer, RestoredTrainerContinuesBitForBit) {
  const char* text =
      "model_preset: \"tiny\" corpus: \"/usr/share/common-licenses/GPL-3\" "
      "tokenizer_vocab_size: 400 batch_size: 2 input_length: 32 target_length: 12 "
      "eval_batches: 1 steps: 4";
  libswitch::Config train = libswitch::Config::from_text(SW_CONFIG_TRAIN, text);
  libswitch::Config config = libswitch::Config::preset("tiny");
  config.set("vocab_size", 512);  // room for the 400-id tokenizer

  std::vector<double> straight;
  {
    libswitch::Model model(config, "cpu", 3);
    libswitch::Trainer trainer(model, train);
    for (int i = 0; i < 4; ++i) straight.push_back(trainer.step().loss);
  }
  TempDir dir;
  std::vector<double> resumed;
  {
    libswitch::Model model(config, "cpu", 3);
    libswitch::Trainer trainer(model, train);
    for (int i = 0; i < 2; ++i) resumed.push_back(trainer.step().loss);
    const std::string saved = trainer.save(dir.path);
    EXPECT_NE(saved.find("step-00000002"), std::string::npos) << saved;
  }
  EXPECT_TRUE(fs::exists(dir.path + "/tokenizer.model"));
  libswitch::Trainer trainer = libswitch::Trainer::restore(dir.path);
  for (int i = 0; i < 2; ++i) {
    const sw_metrics m = trainer.step();
    EXPECT_EQ(m.step, 3 + i);
    resumed.push_back(m.loss);
  }
  EXPECT_EQ(resumed, straight);
  EXPECT_GT(trainer.evaluate().loss, 0);
  // Saved again elsewhere, the run carries its tokenizer along.
  TempDir again;
  trainer.save(again.path);
  EXPECT_TRUE(fs::exists(again.path + "/tokenizer.model"));
  EXPECT_EQ(libswitch::Trainer::restore(again.path).step().step, 5);

  // A model saved without a trainer cannot be continued as a training run.
  TempDir model_only;
  libswitch::Model model(config, "cpu", 3);
  model.save(model_only.path);
  try {
    libswitch::Trainer::restore(model_only.path);
    ADD_FAILURE() << "restored a trainer from a model-only checkpoint";
  } catch (const libswitch::Error& e) {
    EXPECT_EQ(e.status(), SW_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("sw_model_load"), std::string::npos) << e.what();
  }
  // A model too small for the tokenizer is refused at the first built-in step.
  libswitch::Model small(libswitch::Config::preset("tiny"), "cpu", 0);
  libswitch::Trainer t(small, train.clone().set("tokenizer_vocab_size", 1000));
  try {
    t.step();
    ADD_FAILURE() << "trained a 384-id model on a 1000-id tokenizer";
  } catch (const libswitch::Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab_size 384"), std::string::npos) << e.what();
  }
}

}  // namespace
