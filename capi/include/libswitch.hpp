// libswitch.hpp: a header-only C++ wrapper over the C ABI (libswitch.h). Objects own
// their handles (move-only, released in the destructor); every failure throws
// libswitch::Error carrying the sw_status and the library's message. C++17.
#ifndef LIBSWITCH_HPP_
#define LIBSWITCH_HPP_

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "libswitch.h"

namespace libswitch {

class Error : public std::runtime_error {
 public:
  Error(sw_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  sw_status status() const { return status_; }

 private:
  sw_status status_;
};

namespace detail {

inline void check(sw_status status) {
  if (status != SW_OK)
    throw Error(status, std::string(sw_status_string(status)) + ": " + sw_last_error());
}

// The (buf, cap, needed) protocol: ask for the size, then fill (again if it grew).
template <typename Call>
std::string read_string(Call&& call) {
  std::string out(256, '\0');
  while (true) {
    size_t needed = 0;
    const sw_status status = call(out.data(), out.size(), &needed);
    if (status == SW_OK) {
      out.resize(needed - 1);
      return out;
    }
    if (needed <= out.size()) check(status);  // failed for another reason than the size
    out.assign(needed, '\0');
  }
}

// A move-only owner of one C handle.
template <typename T, void (*Destroy)(T*)>
class Handle {
 public:
  Handle() = default;
  explicit Handle(T* raw) : raw_(raw) {}
  Handle(Handle&& o) noexcept : raw_(std::exchange(o.raw_, nullptr)) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      Destroy(raw_);
      raw_ = std::exchange(o.raw_, nullptr);
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { Destroy(raw_); }
  T* get() const { return raw_; }

 private:
  T* raw_ = nullptr;
};

}  // namespace detail

inline std::string version() { return sw_version(); }

// A batch of token ids, row-major [batch, length]; empty masks mean all ones, empty
// labels mean no loss. The views handed to the C ABI point into these vectors.
struct Batch {
  int64_t batch = 0, input_len = 0, target_len = 0;
  std::vector<int32_t> input_ids, attention_mask, decoder_input_ids, decoder_attention_mask, labels;

  // Throws unless every non-empty vector holds exactly its [batch, length] ids.
  sw_batch view() const {
    if (batch < 1 || input_len < 1 || target_len < 1)
      throw Error(SW_ERR_INVALID_ARGUMENT, "Batch: batch, input_len and target_len must be >= 1");
    const size_t in = static_cast<size_t>(batch) * static_cast<size_t>(input_len);
    const size_t out = static_cast<size_t>(batch) * static_cast<size_t>(target_len);
    auto expect = [](const std::vector<int32_t>& v, size_t n, const char* name, bool required) {
      if ((required || !v.empty()) && v.size() != n)
        throw Error(SW_ERR_INVALID_ARGUMENT, std::string("Batch: ") + name + " holds " +
                                                 std::to_string(v.size()) + " ids, expected " +
                                                 std::to_string(n));
    };
    expect(input_ids, in, "input_ids", true);
    expect(attention_mask, in, "attention_mask", false);
    expect(decoder_input_ids, out, "decoder_input_ids", true);
    expect(decoder_attention_mask, out, "decoder_attention_mask", false);
    expect(labels, out, "labels", false);
    sw_batch b;
    SW_INIT_STRUCT(&b);
    b.batch = batch;
    b.input_len = input_len;
    b.target_len = target_len;
    auto ptr = [](const std::vector<int32_t>& v) { return v.empty() ? nullptr : v.data(); };
    b.input_ids = ptr(input_ids);
    b.attention_mask = ptr(attention_mask);
    b.decoder_input_ids = ptr(decoder_input_ids);
    b.decoder_attention_mask = ptr(decoder_attention_mask);
    b.labels = ptr(labels);
    return b;
  }
};

class Config {
 public:
  static Config preset(const std::string& name) {
    sw_config* c = nullptr;
    detail::check(sw_config_preset(name.c_str(), &c));
    return Config(c);
  }
  static Config from_text(sw_config_kind kind, const std::string& text) {
    sw_config* c = nullptr;
    detail::check(sw_config_from_text(kind, text.c_str(), &c));
    return Config(c);
  }
  static Config train_default() {
    sw_config* c = nullptr;
    detail::check(sw_config_train_default(&c));
    return Config(c);
  }
  // Takes ownership of a handle from the C API.
  static Config adopt(sw_config* owned) { return Config(owned); }
  Config clone() const {
    sw_config* c = nullptr;
    detail::check(sw_config_clone(get(), &c));
    return Config(c);
  }

  std::string to_text() const {
    return detail::read_string(
        [&](char* b, size_t cap, size_t* n) { return sw_config_to_text(get(), b, cap, n); });
  }
  void validate() const { detail::check(sw_config_validate(get())); }

  int64_t get_int(const std::string& field) const {
    int64_t v = 0;
    detail::check(sw_config_get_int(get(), field.c_str(), &v));
    return v;
  }
  double get_double(const std::string& field) const {
    double v = 0;
    detail::check(sw_config_get_double(get(), field.c_str(), &v));
    return v;
  }
  bool get_bool(const std::string& field) const {
    int v = 0;
    detail::check(sw_config_get_bool(get(), field.c_str(), &v));
    return v != 0;
  }
  std::string get_string(const std::string& field) const {
    return detail::read_string([&](char* b, size_t cap, size_t* n) {
      return sw_config_get_string(get(), field.c_str(), b, cap, n);
    });
  }
  // Any integer type (bool excepted) sets an integer or enum field.
  template <typename Int,
            typename = std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>>>
  Config& set(const std::string& field, Int v) {
    if constexpr (std::is_unsigned_v<Int>) {
      if (static_cast<uint64_t>(v) > static_cast<uint64_t>(INT64_MAX))
        throw Error(SW_ERR_OUT_OF_RANGE, field + ": " + std::to_string(v) + " does not fit int64");
    }
    detail::check(sw_config_set_int(get(), field.c_str(), static_cast<int64_t>(v)));
    return *this;
  }
  Config& set(const std::string& field, double v) {
    detail::check(sw_config_set_double(get(), field.c_str(), v));
    return *this;
  }
  Config& set(const std::string& field, bool v) {
    detail::check(sw_config_set_bool(get(), field.c_str(), v ? 1 : 0));
    return *this;
  }
  Config& set(const std::string& field, const std::string& v) {
    detail::check(sw_config_set_string(get(), field.c_str(), v.c_str()));
    return *this;
  }
  Config& set(const std::string& field, const char* v) { return set(field, std::string(v)); }

  sw_config* get() const { return handle_.get(); }

 private:
  explicit Config(sw_config* c) : handle_(c) {}
  detail::Handle<sw_config, sw_config_destroy> handle_;
};

struct Losses {
  double loss = 0, ce = 0, aux = 0, z = 0;
};

struct LayerRouting {
  sw_routing_stats stats;
  std::vector<int64_t> tokens_per_expert;
};

class Result {
 public:
  explicit Result(sw_result* r) : handle_(r) {}

  std::vector<int64_t> logits_shape() const {
    std::vector<int64_t> dims(3);
    detail::check(sw_result_logits_shape(get(), dims.data()));
    return dims;
  }
  std::vector<float> logits() const {
    const std::vector<int64_t> d = logits_shape();
    std::vector<float> out(static_cast<size_t>(d[0] * d[1] * d[2]));
    detail::check(sw_result_logits(get(), out.data(), out.size()));
    return out;
  }
  Losses losses() const {
    Losses l;
    detail::check(sw_result_losses(get(), &l.loss, &l.ce, &l.aux, &l.z));
    return l;
  }
  std::vector<LayerRouting> routing() const {
    int64_t n = 0;
    detail::check(sw_result_num_routing_layers(get(), &n));
    std::vector<LayerRouting> layers(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      LayerRouting& l = layers[static_cast<size_t>(i)];
      SW_INIT_STRUCT(&l.stats);
      detail::check(sw_result_routing(get(), i, &l.stats, nullptr, 0));
      l.tokens_per_expert.resize(static_cast<size_t>(l.stats.num_experts));
      detail::check(sw_result_routing(get(), i, &l.stats, l.tokens_per_expert.data(),
                                      l.tokens_per_expert.size()));
    }
    return layers;
  }
  sw_result* get() const { return handle_.get(); }

 private:
  detail::Handle<sw_result, sw_result_destroy> handle_;
};

class Model {
 public:
  // dtype: "f32", "f64" (cpu) or "bf16" (GPU, inference).
  Model(const Config& config, const std::string& device = "cpu", uint64_t seed = 0,
        const std::string& dtype = "f32") {
    sw_model* m = nullptr;
    detail::check(
        sw_model_create_with_dtype(config.get(), device.c_str(), dtype.c_str(), seed, &m));
    handle_ = Owned(m);
  }
  explicit Model(sw_model* owned) : handle_(owned) {}

  static Model load(const std::string& path, const std::string& device = "cpu") {
    sw_model* m = nullptr;
    detail::check(sw_model_load(path.c_str(), device.c_str(), &m));
    return Model(m);
  }
  static Model import_hf(const std::string& config_json, const std::string& weights,
                         const std::string& device = "cpu") {
    sw_model* m = nullptr;
    detail::check(sw_model_import_hf(config_json.c_str(), weights.c_str(), device.c_str(), &m));
    return Model(m);
  }
  // A new model with these weights on device in dtype.
  Model copy_to(const std::string& device, const std::string& dtype = "f32") const {
    sw_model* m = nullptr;
    detail::check(sw_model_copy_to(get(), device.c_str(), dtype.c_str(), &m));
    return Model(m);
  }
  std::string dtype() const {
    return detail::read_string(
        [&](char* b, size_t cap, size_t* need) { return sw_model_dtype(get(), b, cap, need); });
  }
  void save(const std::string& root) const { detail::check(sw_model_save(get(), root.c_str())); }
  void load_parameters(const std::string& path, bool strict = true) {
    detail::check(sw_model_load_parameters(get(), path.c_str(), strict ? 1 : 0));
  }
  void export_hf(const std::string& dir, bool allow_routing_change = false) const {
    detail::check(sw_model_export_hf_with(get(), dir.c_str(), allow_routing_change ? 1 : 0));
  }

  Config config() const {
    sw_config* c = nullptr;
    detail::check(sw_model_config(get(), &c));
    return Config::adopt(c);
  }
  void set_threads(int threads) { detail::check(sw_model_set_threads(get(), threads)); }
  int64_t parameter_count() const {
    int64_t n = 0;
    detail::check(sw_model_parameter_count(get(), &n));
    return n;
  }
  std::vector<std::string> parameter_names() const {
    int64_t n = 0;
    detail::check(sw_model_num_parameters(get(), &n));
    std::vector<std::string> names;
    for (int64_t i = 0; i < n; ++i)
      names.push_back(detail::read_string([&](char* b, size_t cap, size_t* need) {
        return sw_model_parameter_name(get(), i, b, cap, need);
      }));
    return names;
  }
  std::vector<int64_t> parameter_shape(const std::string& name) const {
    int ndim = 0;
    detail::check(sw_model_parameter_shape(get(), name.c_str(), nullptr, 0, &ndim));
    std::vector<int64_t> dims(static_cast<size_t>(ndim));
    detail::check(sw_model_parameter_shape(get(), name.c_str(), dims.data(), ndim, &ndim));
    return dims;
  }
  std::vector<float> get_parameter(const std::string& name) const {
    std::vector<float> out(numel(parameter_shape(name)));
    detail::check(sw_model_get_parameter(get(), name.c_str(), out.data(), out.size()));
    return out;
  }
  void set_parameter(const std::string& name, const std::vector<float>& values) {
    detail::check(sw_model_set_parameter(get(), name.c_str(), values.data(), values.size()));
  }
  std::vector<float> gradient(const std::string& name) const {
    std::vector<float> out(numel(parameter_shape(name)));
    detail::check(sw_model_get_gradient(get(), name.c_str(), out.data(), out.size()));
    return out;
  }

  Result forward(const Batch& batch, bool train = false, bool compute_gradients = false) {
    const sw_batch b = batch.view();
    sw_result* r = nullptr;
    detail::check(sw_model_forward(get(), &b, train ? 1 : 0, compute_gradients ? 1 : 0, &r));
    return Result(r);
  }

  // Greedy generation: one vector of new ids per input sequence.
  std::vector<std::vector<int32_t>> generate(const Batch& inputs, int64_t max_new_tokens,
                                             int32_t vocab_limit = 0) {
    sw_generate_options o;
    SW_INIT_STRUCT(&o);
    o.max_new_tokens = max_new_tokens;
    o.num_beams = 1;
    o.vocab_limit = vocab_limit;
    return generate(inputs, o);
  }

  // Generation under options (SW_INIT_STRUCT them first): greedy, beam search or sampling;
  // options.cancel may stop it (Error with SW_ERR_CANCELLED).
  std::vector<std::vector<int32_t>> generate(const Batch& inputs,
                                             const sw_generate_options& options) {
    if (options.max_new_tokens < 1 || options.max_new_tokens > SW_MAX_NEW_TOKENS)
      throw Error(SW_ERR_INVALID_ARGUMENT, "generate: max_new_tokens must be in [1, " +
                                               std::to_string(SW_MAX_NEW_TOKENS) + "]");
    const sw_batch b = inputs.view();
    const auto new_tokens = static_cast<size_t>(options.max_new_tokens);
    std::vector<int32_t> ids(static_cast<size_t>(inputs.batch) * new_tokens);
    std::vector<int64_t> lengths(static_cast<size_t>(inputs.batch));
    detail::check(sw_model_generate(get(), &b, &options, ids.data(), ids.size(), lengths.data(),
                                    lengths.size()));
    std::vector<std::vector<int32_t>> out;
    for (size_t i = 0; i < lengths.size(); ++i) {
      const int32_t* row = ids.data() + i * new_tokens;
      out.emplace_back(row, row + lengths[i]);
    }
    return out;
  }

  sw_model* get() const { return handle_.get(); }

 private:
  using Owned = detail::Handle<sw_model, sw_model_destroy>;
  static size_t numel(const std::vector<int64_t>& shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= static_cast<size_t>(d);
    return n;
  }
  Owned handle_;
};

class Trainer {
 public:
  Trainer(Model& model, const Config& train_config) {
    sw_trainer* t = nullptr;
    detail::check(sw_trainer_create(model.get(), train_config.get(), &t));
    handle_ = Owned(t);
  }
  static Trainer restore(const std::string& path, const std::string& device = "cpu") {
    sw_trainer* t = nullptr;
    detail::check(sw_trainer_restore(path.c_str(), device.c_str(), &t));
    return Trainer(t);
  }

  // One step on the built-in data, or on `batch`.
  sw_metrics step() { return step_on(nullptr); }
  sw_metrics step(const Batch& batch) {
    const sw_batch b = batch.view();
    return step_on(&b);
  }
  sw_metrics evaluate() { return evaluate_on(nullptr); }
  sw_metrics evaluate(const Batch& batch) {
    const sw_batch b = batch.view();
    return evaluate_on(&b);
  }
  // Saves under root; returns the checkpoint directory written.
  std::string save(const std::string& root) {
    detail::check(sw_trainer_save(get(), root.c_str()));
    return detail::read_string([&](char* b, size_t cap, size_t* n) {
      return sw_checkpoint_latest(root.c_str(), b, cap, n);
    });
  }
  Model model() {
    sw_model* m = nullptr;
    detail::check(sw_trainer_model(get(), &m));
    return Model(m);
  }
  sw_trainer* get() const { return handle_.get(); }

 private:
  using Owned = detail::Handle<sw_trainer, sw_trainer_destroy>;
  explicit Trainer(sw_trainer* t) : handle_(t) {}
  sw_metrics step_on(const sw_batch* b) {
    sw_metrics m;
    SW_INIT_STRUCT(&m);
    detail::check(sw_trainer_step(get(), b, &m));
    return m;
  }
  sw_metrics evaluate_on(const sw_batch* b) {
    sw_metrics m;
    SW_INIT_STRUCT(&m);
    detail::check(sw_trainer_evaluate(get(), b, &m));
    return m;
  }
  Owned handle_;
};

}  // namespace libswitch

#endif  // LIBSWITCH_HPP_
