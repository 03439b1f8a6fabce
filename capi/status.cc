// Status codes, the thread-local last error, versions, device queries, and the argument
// checks shared by every entry point.
#include <omp.h>

#include <cstddef>

#include "capi/internal.h"
#include "core/infer/generate.h"
#include "core/tensor/dtype.h"

// The header's bounds are the core's.
static_assert(SW_MAX_NEW_TOKENS == sw::kMaxNewTokens && SW_MAX_BEAMS == sw::kMaxBeams,
              "the C header's generation bounds differ from core/infer/generate.h");

// The public structs' layouts are ABI: a field moved by mistake fails the build.
static_assert(sizeof(void*) != 8 ||
                  (sizeof(sw_batch) == 72 && offsetof(sw_batch, batch) == 8 &&
                   offsetof(sw_batch, input_ids) == 32 && offsetof(sw_batch, labels) == 64),
              "sw_batch layout changed");
static_assert(sizeof(sw_routing_stats) == 80 && offsetof(sw_routing_stats, block) == 8 &&
                  offsetof(sw_routing_stats, dropped_fraction) == 48 &&
                  offsetof(sw_routing_stats, z_loss) == 72,
              "sw_routing_stats layout changed");
static_assert(sizeof(sw_metrics) == 112 && offsetof(sw_metrics, step) == 8 &&
                  offsetof(sw_metrics, grad_norm) == 48 && offsetof(sw_metrics, tokens) == 72 &&
                  offsetof(sw_metrics, tokens_per_second) == 88 &&
                  offsetof(sw_metrics, skipped_steps) == 104,
              "sw_metrics layout changed");
static_assert(sizeof(sw_generate_options) == 96 &&
                  offsetof(sw_generate_options, max_new_tokens) == 8 &&
                  offsetof(sw_generate_options, seed) == 56 &&
                  offsetof(sw_generate_options, vocab_limit) == 64 &&
                  offsetof(sw_generate_options, min_new_tokens) == 80 &&
                  offsetof(sw_generate_options, cancel) == 88,
              "sw_generate_options layout changed");
static_assert(static_cast<int>(SW_ERR_CANCELLED) == static_cast<int>(sw::Status::kCancelled) &&
                  static_cast<int>(SW_ERR_INTERNAL) == static_cast<int>(sw::Status::kInternal) &&
                  static_cast<int>(SW_ERR_NUMERIC) == static_cast<int>(sw::Status::kNumeric),
              "sw_status and sw::Status must agree");

namespace sw::capi {
namespace {
thread_local std::string last_error;
}  // namespace

sw_status fail(Status status, const char* function, const char* what) noexcept {
  try {
    last_error.assign(function).append(": ").append(what);
  } catch (...) {
    last_error.clear();  // no memory for the message: the status still says what happened
  }
  return static_cast<sw_status>(status);
}

void clear_error() noexcept { last_error.clear(); }

ScopedThreads::ScopedThreads(int threads) : previous_(omp_get_max_threads()) {
  if (threads > 0) omp_set_num_threads(threads);
}
ScopedThreads::~ScopedThreads() { omp_set_num_threads(previous_); }

std::string string_arg(const char* text, const char* name) {
  SW_CHECK_ARG(text != nullptr, name, " is NULL");
  return text;
}

void write_string(const std::string& value, char* buf, size_t cap, size_t* needed,
                  const char* name) {
  if (needed) *needed = value.size() + 1;
  SW_CHECK_ARG(buf != nullptr || cap == 0, name, " is NULL with cap ", cap);
  SW_CHECK_ARG(cap >= value.size() + 1, name, ": cap ", cap, " is too small, ", value.size() + 1,
               " bytes needed");
  std::memcpy(buf, value.c_str(), value.size() + 1);
}

void check_length(size_t given, int64_t expected, const char* name) {
  SW_CHECK_ARG(given == static_cast<size_t>(expected), name, ": length ", given, " given, ",
               expected, " needed");
}

void check_struct_size(uint32_t struct_size, size_t minimum, const char* name) {
  SW_CHECK_ARG(struct_size >= minimum, name, "->struct_size is ", struct_size,
               ", expected >= ", minimum, " (set it with SW_INIT_STRUCT)");
}

Batch to_batch(const sw_batch* b, bool labels_required) {
  const sw_batch batch = read_struct(b, "batch");
  SW_CHECK_ARG(batch.batch >= 1, "batch->batch must be >= 1, got ", batch.batch);
  SW_CHECK_ARG(batch.input_len >= 1, "batch->input_len must be >= 1, got ", batch.input_len);
  SW_CHECK_ARG(batch.target_len >= 1, "batch->target_len must be >= 1, got ", batch.target_len);
  const Shape input{batch.batch, batch.input_len}, target{batch.batch, batch.target_len};
  auto copy = [](const int32_t* data, const Shape& shape, const char* name, bool required) {
    SW_CHECK_ARG(data != nullptr || !required, "batch->", name, " is NULL");
    if (!data) return Tensor();
    Tensor t = Tensor::empty(shape, DType::i32);
    std::memcpy(t.data<int32_t>(), data, t.nbytes());
    return t;
  };
  Batch out;
  out.input_ids = copy(batch.input_ids, input, "input_ids", true);
  out.attention_mask = copy(batch.attention_mask, input, "attention_mask", false);
  out.decoder_input_ids = copy(batch.decoder_input_ids, target, "decoder_input_ids", true);
  out.decoder_attention_mask =
      copy(batch.decoder_attention_mask, target, "decoder_attention_mask", false);
  out.labels = copy(batch.labels, target, "labels", labels_required);
  return out;
}

}  // namespace sw::capi

using sw::capi::deref;
using sw::capi::guard;

extern "C" {

const char* sw_status_string(sw_status status) {
  switch (status) {
    case SW_OK:
      return "SW_OK";
    case SW_ERR_INVALID_ARGUMENT:
      return "SW_ERR_INVALID_ARGUMENT";
    case SW_ERR_OUT_OF_RANGE:
      return "SW_ERR_OUT_OF_RANGE";
    case SW_ERR_NOT_FOUND:
      return "SW_ERR_NOT_FOUND";
    case SW_ERR_IO:
      return "SW_ERR_IO";
    case SW_ERR_CORRUPT:
      return "SW_ERR_CORRUPT";
    case SW_ERR_UNSUPPORTED:
      return "SW_ERR_UNSUPPORTED";
    case SW_ERR_DEVICE:
      return "SW_ERR_DEVICE";
    case SW_ERR_OUT_OF_MEMORY:
      return "SW_ERR_OUT_OF_MEMORY";
    case SW_ERR_DISTRIBUTED:
      return "SW_ERR_DISTRIBUTED";
    case SW_ERR_NUMERIC:
      return "SW_ERR_NUMERIC";
    case SW_ERR_INTERNAL:
      return "SW_ERR_INTERNAL";
    case SW_ERR_CANCELLED:
      return "SW_ERR_CANCELLED";
    case SW_STATUS_ENUM_MAX_:
      break;
  }
  return "SW_ERR_UNKNOWN";
}

const char* sw_last_error(void) { return sw::capi::last_error.c_str(); }

#define SW_STRINGIFY_(x) #x
#define SW_STRINGIFY(x) SW_STRINGIFY_(x)
const char* sw_version(void) {
  return SW_STRINGIFY(SW_VERSION_MAJOR) "." SW_STRINGIFY(SW_VERSION_MINOR) "." SW_STRINGIFY(
      SW_VERSION_PATCH);
}

int sw_abi_version(void) { return SW_ABI_VERSION; }

int sw_cuda_built(void) { return sw::cuda_built() ? 1 : 0; }

sw_status sw_cuda_device_count(int* out) {
  return guard(__func__, [&] { deref(out, "out") = sw::cuda_device_count(); });
}

}  // extern "C"
