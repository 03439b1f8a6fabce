// What the C ABI's implementation files share: the handle structs, the exception
// firewall, and the checks that turn caller pointers and buffers into core values.
#pragma once

#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "capi/include/libswitch.h"
#include "core/model/switch_transformer.h"
#include "core/tensor/error.h"
#include "core/train/pretraining_pipeline.h"
#include "core/train/train_config.h"
#include "core/train/trainer.h"

namespace sw::capi {

// A model shared by every handle to it and by the trainers that train it.
struct ModelState {
  explicit ModelState(SwitchTransformer m) : model(std::move(m)) {}
  SwitchTransformer model;
  // Shared by forward passes that change nothing; exclusive for anything that writes the
  // parameters or the gradients.
  mutable std::shared_mutex mutex;
  int threads = 0;                                        // guarded by mutex; 0 = OpenMP's default
  std::vector<std::pair<std::string, Tensor>> gradients;  // of the last forward with them
};

// Runs the calling thread's OpenMP regions (Eigen's GEMMs, the core's loops) on `threads`
// threads for its lifetime; 0 leaves the default.
class ScopedThreads {
 public:
  explicit ScopedThreads(int threads);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int previous_ = 0;
};

// Records `message` as this thread's last error and returns its status.
sw_status fail(Status status, const std::string& message);
void clear_error();

// The exception firewall every C entry point goes through: the body's exceptions become
// a status and a thread-local message prefixed with the function's name.
template <typename Body>
sw_status guard(const char* function, Body&& body) noexcept {
  try {
    body();
    clear_error();
    return SW_OK;
  } catch (const Error& e) {
    return fail(e.status(), std::string(function) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return fail(Status::kOutOfMemory, std::string(function) + ": out of memory");
  } catch (const std::exception& e) {
    return fail(Status::kInternal, std::string(function) + ": " + e.what());
  } catch (...) {
    return fail(Status::kInternal, std::string(function) + ": unknown exception");
  }
}

// A non-NULL pointer argument, or an invalid-argument error naming it.
template <typename T>
T& deref(T* pointer, const char* name) {
  SW_CHECK_ARG(pointer != nullptr, name, " is NULL");
  return *pointer;
}
std::string string_arg(const char* text, const char* name);

// The (buf, cap, needed) protocol of the header.
void write_string(const std::string& value, char* buf, size_t cap, size_t* needed,
                  const char* name);
// An element count given by the caller that must equal what the call needs.
void check_length(size_t given, int64_t expected, const char* name);

// struct_size as the caller set it: at least this version's first layout.
void check_struct_size(uint32_t struct_size, size_t v1_size, const char* name);
// Copies `value` into the caller's struct, no more than its struct_size bytes.
template <typename S>
void write_struct(S* out, S value, const char* name) {
  S& target = deref(out, name);
  check_struct_size(target.struct_size, sizeof(S), name);
  value.struct_size = target.struct_size;
  std::memcpy(&target, &value, std::min<size_t>(target.struct_size, sizeof(S)));
}

// Host tensors from a caller batch, every pointer and size checked; labels required or not.
Batch to_batch(const sw_batch* batch, bool labels_required);

// A config handle of the kind asked for, or an error naming the argument.
const ModelConfig& model_config_arg(const sw_config* config);
const TrainConfig& train_config_arg(const sw_config* config);
sw_config* new_model_config(const ModelConfig& config);

ModelState& model_state(const sw_model* model);
sw_model* new_model_handle(std::shared_ptr<ModelState> state);
std::shared_ptr<ModelState> make_model_state(SwitchTransformer cpu_model, const char* device);

}  // namespace sw::capi

struct sw_model {
  std::shared_ptr<sw::capi::ModelState> state;
};

struct sw_config {
  sw_config_kind kind = SW_CONFIG_MODEL;
  std::unique_ptr<google::protobuf::Message> message;  // ModelConfig or TrainConfig
};

struct sw_result {
  sw::ForwardOutput output;  // logits converted to host f32
  int64_t num_experts = 0;
};

struct sw_trainer {
  std::shared_ptr<sw::capi::ModelState> model;
  sw::TrainConfig config;  // its model is the trained model's config
  std::unique_ptr<sw::Trainer> trainer;
  // The built-in data: made at the first step or evaluation that asks for it.
  std::unique_ptr<sw::PretrainingPipeline> data;
  sw::DataPosition resume_position;  // where a restored run's data continues
  std::vector<sw::Batch> eval_batches;
  std::mutex mutex;
};
