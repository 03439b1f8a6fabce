// What the C ABI's implementation files share: the handle structs, the exception
// firewall, and the checks that turn caller pointers and buffers into core values.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "capi/include/libswitch.h"
#include "core/dist/layout.h"
#include "core/io/tensorboard.h"
#include "core/model/switch_transformer.h"
#include "core/tensor/error.h"
#include "core/train/model_shares.h"
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
  int threads = 0;  // guarded by mutex; 0 = OpenMP's default
  // Keys the random streams of train-mode forward passes, so each draws new noise.
  std::atomic<uint64_t> train_forwards{0};
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

// Records "<function>: <what>" as this thread's last error and returns the status; never
// throws (without memory for the message, the status alone says what happened).
sw_status fail(Status status, const char* function, const char* what) noexcept;
void clear_error() noexcept;

// The exception firewall every C entry point goes through: the body's exceptions become
// a status and a thread-local message prefixed with the function's name.
template <typename Body>
sw_status guard(const char* function, Body&& body) noexcept {
  try {
    body();
    clear_error();
    return SW_OK;
  } catch (const Error& e) {
    return fail(e.status(), function, e.what());
  } catch (const std::bad_alloc&) {
    return fail(Status::kOutOfMemory, function, "out of memory");
  } catch (const std::exception& e) {
    return fail(Status::kInternal, function, e.what());
  } catch (...) {
    return fail(Status::kInternal, function, "unknown exception");
  }
}

// A non-NULL pointer argument, or an invalid-argument error naming it.
template <typename T>
T& deref(T* pointer, const char* name) {
  SW_CHECK_ARG(pointer != nullptr, name, " is NULL");
  return *pointer;
}
// Stores make()'s new handle in *out, checking out first: nothing is made (and leaked)
// when out is NULL.
template <typename T, typename Make>
void put_out(T** out, Make make) {
  T*& slot = deref(out, "out");
  slot = make();
}
std::string string_arg(const char* text, const char* name);

// The (buf, cap, needed) protocol of the header.
void write_string(const std::string& value, char* buf, size_t cap, size_t* needed,
                  const char* name);
// An element count given by the caller that must equal what the call needs.
void check_length(size_t given, int64_t expected, const char* name);

// Each public struct's size in the first ABI version: a caller built against that header
// passes it, and a later version that appends fields must keep accepting it.
template <typename S>
constexpr size_t v1_size();
template <>
constexpr size_t v1_size<sw_batch>() {
  return offsetof(sw_batch, labels) + sizeof(const int32_t*);
}
template <>
constexpr size_t v1_size<sw_routing_stats>() {
  return offsetof(sw_routing_stats, z_loss) + sizeof(double);
}
template <>
constexpr size_t v1_size<sw_metrics>() {
  return offsetof(sw_metrics, skipped_steps) + sizeof(int64_t);
}
template <>
constexpr size_t v1_size<sw_generate_options>() {
  return offsetof(sw_generate_options, min_new_tokens) + sizeof(int64_t);
}

void check_struct_size(uint32_t struct_size, size_t minimum, const char* name);
// The caller's struct as this version knows it: fields beyond its struct_size read as 0.
template <typename S>
S read_struct(const S* in, const char* name) {
  const S& given = deref(in, name);
  check_struct_size(given.struct_size, v1_size<S>(), name);
  S local{};
  std::memcpy(&local, &given, std::min<size_t>(given.struct_size, sizeof(S)));
  return local;
}
// Copies `value` into the caller's struct, no more than its struct_size bytes.
template <typename S>
void write_struct(S* out, S value, const char* name) {
  S& target = deref(out, name);
  check_struct_size(target.struct_size, v1_size<S>(), name);
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
// The gradient of the last forward with gradients (caller holds s.mutex); kNotFound when
// none has run or no parameter has that name.
const Tensor& last_gradient(const ModelState& s, const char* name);

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

struct sw_cancel {
  std::atomic<bool> requested{false};
};

struct sw_communicator {
  std::shared_ptr<sw::Communicator> comm;
};

struct sw_trainer {
  std::shared_ptr<sw::capi::ModelState> model;
  sw::TrainConfig config;  // as given (its model is the trained model's config)
  // Where the pipeline's tokenizer comes from when the config names none: a restored
  // run's own tokenizer.model (absolute path); empty: train one.
  std::string tokenizer_path;
  std::unique_ptr<sw::Trainer> trainer;
  // Distillation's teacher (the config's distill_teacher), loaded once; null without.
  std::shared_ptr<sw::SwitchTransformer> teacher;
  // The built-in data: made at the first step or evaluation that asks for it.
  std::unique_ptr<sw::PretrainingPipeline> data;
  sw::DataPosition resume_position;  // where a restored run's data continues
  std::vector<sw::Batch> eval_batches;
  // A parallel layout (sw_trainer_set_parallel): its ranks (kept alive), their groups, the
  // replicas a built-in batch is sharded over, and this rank's share of the model.
  std::shared_ptr<sw::Communicator> world;  // null: a single process
  std::unique_ptr<sw::ParallelCommunicators> groups;
  sw::Communicator* replicas = nullptr;
  std::unique_ptr<sw::ModelShares> shares;
  bool split_model = false;  // ep or mp > 1: the trainer's model is this rank's share
  bool stepped = false;      // a step has been taken by this object
  // sw_trainer_log_to's directory ("": none) and its writer, made at the first record on
  // world rank 0.
  std::string log_dir;
  std::unique_ptr<sw::TensorBoardWriter> events;
  std::mutex mutex;
};
