// sw_model and sw_result: creating a model, its parameters, forward passes with their
// losses, routing and gradients, generation and device validation.
#include <algorithm>
#include <limits>

#include "capi/internal.h"
#include "core/infer/generate.h"
#include "core/model/validate.h"

namespace sw::capi {

ModelState& model_state(const sw_model* model) {
  const sw_model& m = deref(model, "model");
  SW_CHECK(m.state != nullptr, Status::kInternal, "model: empty handle");
  return *m.state;
}

sw_model* new_model_handle(std::shared_ptr<ModelState> state) {
  return new sw_model{std::move(state)};
}

std::shared_ptr<ModelState> make_model_state(SwitchTransformer cpu_model, const char* device) {
  const Device target = Device::parse(string_arg(device, "device"));
  if (target.is_cpu()) return std::make_shared<ModelState>(std::move(cpu_model));
  SwitchTransformer on_device(cpu_model.config(), cpu_model.seed(), DType::f32, target);
  for (const auto& e : cpu_model.parameters().entries())
    on_device.parameters().set(e.name, e.tensor);
  return std::make_shared<ModelState>(std::move(on_device));
}

const Tensor& last_gradient(const ModelState& s, const char* name) {
  const std::string wanted = string_arg(name, "name");
  SW_CHECK(!s.gradients.empty(), sw::Status::kNotFound,
           "no gradients yet: run sw_model_forward with compute_gradients first");
  for (const auto& [n, g] : s.gradients)
    if (n == wanted) return g;
  throw sw::Error(sw::Status::kNotFound, "no parameter named \"" + wanted + "\"");
}

namespace {

const Tensor& parameter(const ModelState& s, const char* name) {
  return s.model.parameters().get(string_arg(name, "name"));
}

void copy_out_f32(const Tensor& t, float* buf, size_t len, const char* name) {
  check_length(len, t.numel(), name);
  SW_CHECK_ARG(buf != nullptr, name, " is NULL");
  const Tensor host = t.to(Device::cpu()).to(DType::f32);
  std::memcpy(buf, host.data<float>(), host.nbytes());
}

}  // namespace
}  // namespace sw::capi

using namespace sw::capi;  // NOLINT: this file implements the namespace's C face

extern "C" {

sw_status sw_model_create(const sw_config* config, const char* device, uint64_t seed,
                          sw_model** out) {
  return sw_model_create_with_dtype(config, device, "f32", seed, out);
}

sw_status sw_model_create_with_dtype(const sw_config* config, const char* device, const char* dtype,
                                     uint64_t seed, sw_model** out) {
  return guard(__func__, [&] {
    sw_model** target = &deref(out, "out");
    const sw::ModelConfig& c = model_config_arg(config);
    const sw::Device d = sw::Device::parse(string_arg(device, "device"));
    const sw::DType t = sw::model_dtype_from_name(string_arg(dtype, "dtype"));
    *target = new_model_handle(std::make_shared<ModelState>(sw::SwitchTransformer(c, seed, t, d)));
  });
}

sw_status sw_model_copy_to(const sw_model* model, const char* device, const char* dtype,
                           sw_model** out) {
  return guard(__func__, [&] {
    sw_model** target = &deref(out, "out");
    const ModelState& s = model_state(model);
    const sw::Device d = sw::Device::parse(string_arg(device, "device"));
    const sw::DType t = sw::model_dtype_from_name(string_arg(dtype, "dtype"));
    std::shared_lock lock(s.mutex);  // no parameter changes while copying
    *target = new_model_handle(std::make_shared<ModelState>(s.model.copy_to(d, t)));
  });
}

sw_status sw_model_retain(sw_model* model, sw_model** out) {
  return guard(__func__, [&] {
    model_state(model);
    put_out(out, [&] { return new_model_handle(model->state); });
  });
}

void sw_model_destroy(sw_model* model) { delete model; }

sw_status sw_model_config(const sw_model* model, sw_config** out) {
  return guard(__func__, [&] {
    put_out(out, [&] { return new_model_config(model_state(model).model.config()); });
  });
}

sw_status sw_model_seed(const sw_model* model, uint64_t* out) {
  return guard(__func__, [&] { deref(out, "out") = model_state(model).model.seed(); });
}

sw_status sw_model_device(const sw_model* model, char* buf, size_t cap, size_t* needed) {
  return guard(__func__, [&] {
    write_string(model_state(model).model.device().str(), buf, cap, needed, "buf");
  });
}

sw_status sw_model_dtype(const sw_model* model, char* buf, size_t cap, size_t* needed) {
  return guard(__func__, [&] {
    write_string(sw::dtype_name(model_state(model).model.dtype()), buf, cap, needed, "buf");
  });
}

sw_status sw_model_set_threads(sw_model* model, int threads) {
  return guard(__func__, [&] {
    ModelState& s = model_state(model);
    SW_CHECK_ARG(threads >= 0 && threads <= SW_MAX_THREADS, "threads must be in [0, ",
                 SW_MAX_THREADS, "] (0: the caller's OpenMP setting), got ", threads);
    std::unique_lock lock(s.mutex);
    s.threads = threads;
  });
}

sw_status sw_model_threads(const sw_model* model, int* out) {
  return guard(__func__, [&] {
    ModelState& s = model_state(model);
    std::shared_lock lock(s.mutex);
    deref(out, "out") = s.threads;
  });
}

sw_status sw_model_parameter_count(const sw_model* model, int64_t* out) {
  return guard(__func__,
               [&] { deref(out, "out") = model_state(model).model.parameters().num_elements(); });
}

sw_status sw_model_num_parameters(const sw_model* model, int64_t* out) {
  return guard(__func__, [&] {
    deref(out, "out") =
        static_cast<int64_t>(model_state(model).model.parameters().entries().size());
  });
}

sw_status sw_model_parameter_name(const sw_model* model, int64_t index, char* buf, size_t cap,
                                  size_t* needed) {
  return guard(__func__, [&] {
    const auto& entries = model_state(model).model.parameters().entries();
    SW_CHECK(index >= 0 && index < static_cast<int64_t>(entries.size()), sw::Status::kOutOfRange,
             "index ", index, " is not in [0, ", entries.size(), ")");
    write_string(entries[static_cast<size_t>(index)].name, buf, cap, needed, "buf");
  });
}

sw_status sw_model_parameter_shape(const sw_model* model, const char* name, int64_t* dims, int cap,
                                   int* ndim) {
  return guard(__func__, [&] {
    const sw::Tensor& t = parameter(model_state(model), name);
    int& n = deref(ndim, "ndim");
    SW_CHECK_ARG(cap >= 0, "cap must be >= 0, got ", cap);
    SW_CHECK_ARG(dims != nullptr || cap == 0, "dims is NULL with cap ", cap);
    for (int i = 0; i < std::min(cap, t.ndim()); ++i) dims[i] = t.dim(i);
    n = t.ndim();
  });
}

sw_status sw_model_get_parameter(const sw_model* model, const char* name, float* buf, size_t len) {
  return guard(__func__, [&] {
    ModelState& s = model_state(model);
    std::shared_lock lock(s.mutex);
    copy_out_f32(parameter(s, name), buf, len, "buf");
  });
}

sw_status sw_model_set_parameter(sw_model* model, const char* name, const float* buf, size_t len) {
  return guard(__func__, [&] {
    ModelState& s = model_state(model);
    const sw::Tensor& target = parameter(s, name);
    check_length(len, target.numel(), "buf");
    SW_CHECK_ARG(buf != nullptr, "buf is NULL");
    sw::Tensor values = sw::Tensor::empty(target.shape(), sw::DType::f32);
    std::memcpy(values.data<float>(), buf, values.nbytes());
    std::unique_lock lock(s.mutex);
    s.model.parameters().set(name, values);
  });
}

sw_status sw_model_forward(sw_model* model, const sw_batch* batch, int train, int compute_gradients,
                           sw_result** out) {
  return guard(__func__, [&] {
    ModelState& s = model_state(model);
    sw_result** target = &deref(out, "out");
    const sw::Batch b = to_batch(batch, compute_gradients != 0);
    sw::ForwardOptions options;
    options.train = train != 0;
    if (options.train) options.step = s.train_forwards.fetch_add(1);
    auto result = std::make_unique<sw_result>();
    result->num_experts = s.model.config().num_experts();
    if (compute_gradients) {
      std::unique_lock lock(s.mutex);
      ScopedThreads threads(s.threads);
      std::vector<std::pair<std::string, sw::Tensor>> gradients;
      result->output = s.model.forward_backward(b, options, gradients);
      s.gradients = std::move(gradients);
    } else {
      std::shared_lock lock(s.mutex);
      ScopedThreads threads(s.threads);
      result->output = s.model.forward(b, options);
    }
    result->output.logits = result->output.logits.to(sw::Device::cpu()).to(sw::DType::f32);
    result->output.encoder_output = sw::Tensor();  // not part of the C result
    *target = result.release();
  });
}

sw_status sw_model_get_gradient(const sw_model* model, const char* name, float* buf, size_t len) {
  return guard(__func__, [&] {
    ModelState& s = model_state(model);
    std::shared_lock lock(s.mutex);
    copy_out_f32(last_gradient(s, name), buf, len, "buf");
  });
}

sw_status sw_result_logits_shape(const sw_result* result, int64_t dims[3]) {
  return guard(__func__, [&] {
    const sw::Tensor& logits = deref(result, "result").output.logits;
    SW_CHECK_ARG(dims != nullptr, "dims is NULL");
    for (int i = 0; i < 3; ++i) dims[i] = logits.dim(i);
  });
}

sw_status sw_result_logits(const sw_result* result, float* buf, size_t len) {
  return guard(__func__,
               [&] { copy_out_f32(deref(result, "result").output.logits, buf, len, "buf"); });
}

sw_status sw_result_losses(const sw_result* result, double* loss, double* ce, double* aux,
                           double* z) {
  return guard(__func__, [&] {
    const sw::ForwardOutput& o = deref(result, "result").output;
    if (loss) *loss = o.loss;
    if (ce) *ce = o.ce_loss;
    if (aux) *aux = o.aux_loss;
    if (z) *z = o.z_loss;
  });
}

sw_status sw_result_num_routing_layers(const sw_result* result, int64_t* out) {
  return guard(__func__, [&] {
    deref(out, "out") = static_cast<int64_t>(deref(result, "result").output.routing.size());
  });
}

sw_status sw_result_routing(const sw_result* result, int64_t layer, sw_routing_stats* out,
                            int64_t* tokens_per_expert, size_t len) {
  return guard(__func__, [&] {
    const sw_result& r = deref(result, "result");
    const auto& layers = r.output.routing;
    SW_CHECK(layer >= 0 && layer < static_cast<int64_t>(layers.size()), sw::Status::kOutOfRange,
             "layer ", layer, " is not in [0, ", layers.size(), ")");
    const sw::LayerRouting& l = layers[static_cast<size_t>(layer)];
    deref(out, "out");
    if (tokens_per_expert) check_length(len, r.num_experts, "tokens_per_expert");
    sw_routing_stats s{};
    s.stack = l.stack == sw::Stack::kEncoder ? SW_ENCODER : SW_DECODER;
    s.block = l.block;
    s.num_experts = r.num_experts;
    s.capacity = l.capacity;
    s.group_size = l.group_size;
    for (int64_t n : l.stats.tokens_per_expert) s.tokens += n;
    s.dropped_fraction = l.stats.dropped_fraction;
    s.router_entropy = l.stats.router_entropy;
    s.aux_loss = l.aux_loss;
    s.z_loss = l.z_loss;
    write_struct(out, s, "out");
    if (tokens_per_expert)
      std::copy(l.stats.tokens_per_expert.begin(), l.stats.tokens_per_expert.end(),
                tokens_per_expert);
  });
}

void sw_result_destroy(sw_result* result) { delete result; }

sw_status sw_cancel_create(sw_cancel** out) {
  return guard(__func__, [&] { put_out(out, [] { return new sw_cancel; }); });
}

sw_status sw_cancel_request(sw_cancel* cancel) {
  return guard(__func__, [&] { deref(cancel, "cancel").requested.store(true); });
}

sw_status sw_cancel_reset(sw_cancel* cancel) {
  return guard(__func__, [&] { deref(cancel, "cancel").requested.store(false); });
}

sw_status sw_cancel_is_requested(const sw_cancel* cancel, int* out) {
  return guard(__func__,
               [&] { deref(out, "out") = deref(cancel, "cancel").requested.load() ? 1 : 0; });
}

void sw_cancel_destroy(sw_cancel* cancel) { delete cancel; }

sw_status sw_model_generate(sw_model* model, const sw_batch* inputs,
                            const sw_generate_options* options, int32_t* out_ids, size_t out_len,
                            int64_t* lengths, size_t lengths_len) {
  return guard(__func__, [&] {
    ModelState& s = model_state(model);
    const sw_generate_options o = read_struct(options, "options");
    sw::GenerateOptions g;
    g.max_new_tokens = o.max_new_tokens;
    g.min_new_tokens = o.min_new_tokens;
    SW_CHECK_ARG(o.num_beams >= 0, "options: num_beams must be >= 0 (0 or 1: no beams), got ",
                 o.num_beams);
    g.num_beams = std::max<int64_t>(o.num_beams, 1);
    g.length_penalty = o.length_penalty;
    g.early_stopping = o.early_stopping != 0;
    g.temperature = o.temperature;
    g.top_k = o.top_k;
    g.top_p = o.top_p == 0 ? 1.0 : o.top_p;
    g.seed = o.seed;
    g.vocab_limit = o.vocab_limit;
    g.dropless = o.dropless != 0;
    g.cancel = o.cancel ? &o.cancel->requested : nullptr;
    sw::validate(g);
    const sw_batch in = read_struct(inputs, "inputs");
    SW_CHECK_ARG(in.batch >= 1 && in.input_len >= 1,
                 "inputs: batch and input_len must be >= 1, got ", in.batch, " and ", in.input_len);
    int64_t out_count = 0;
    SW_CHECK_ARG(!__builtin_mul_overflow(in.batch, g.max_new_tokens, &out_count), "out_ids: batch ",
                 in.batch, " x max_new_tokens ", o.max_new_tokens, " overflows");
    check_length(out_len, out_count, "out_ids");
    check_length(lengths_len, in.batch, "lengths");
    SW_CHECK_ARG(out_ids != nullptr && lengths != nullptr, "out_ids and lengths must not be NULL");
    // Only the encoder side is used: a one-token decoder stands in for the rest.
    sw_batch encoder = in;
    const int32_t start = 0;
    encoder.target_len = 1;
    std::vector<int32_t> starts(static_cast<size_t>(in.batch), start);
    encoder.decoder_input_ids = starts.data();
    encoder.decoder_attention_mask = nullptr;
    encoder.labels = nullptr;
    const sw::Batch b = to_batch(&encoder, false);
    std::vector<std::vector<int32_t>> generated;
    {
      std::shared_lock lock(s.mutex);
      ScopedThreads threads(s.threads);
      generated = sw::generate(s.model, b.input_ids, b.attention_mask, g);
    }
    std::fill(out_ids, out_ids + out_len, 0);
    SW_CHECK(generated.size() == static_cast<size_t>(in.batch), sw::Status::kInternal,
             "generation returned ", generated.size(), " rows for ", in.batch);
    for (size_t i = 0; i < generated.size(); ++i) {
      SW_CHECK(generated[i].size() <= static_cast<size_t>(o.max_new_tokens), sw::Status::kInternal,
               "generation returned too many tokens");
      std::copy(generated[i].begin(), generated[i].end(),
                out_ids + i * static_cast<size_t>(o.max_new_tokens));
      lengths[i] = static_cast<int64_t>(generated[i].size());
    }
  });
}

sw_status sw_model_validate(const sw_model* model, const sw_batch* batch, const char* device,
                            const char* dtype, double tolerance, char* report, size_t cap,
                            size_t* needed, int* within_tolerance) {
  return guard(__func__, [&] {
    ModelState& s = model_state(model);
    int& within = deref(within_tolerance, "within_tolerance");
    sw::ValidationOptions options;
    options.device = sw::Device::parse(string_arg(device, "device"));
    const std::string type = string_arg(dtype, "dtype");
    SW_CHECK_ARG(type == "f32" || type == "bf16", "dtype: expected \"f32\" or \"bf16\", got \"",
                 type, "\"");
    options.dtype = type == "f32" ? sw::DType::f32 : sw::DType::bf16;
    options.tolerance = tolerance > 0 ? tolerance : (type == "f32" ? 1e-4 : 2e-2);
    const sw::Batch b = to_batch(batch, false);
    std::shared_lock lock(s.mutex);
    ScopedThreads threads(s.threads);
    const sw::ValidationReport r = sw::validate_devices(s.model, b, options);
    write_string(r.text(options), report, cap, needed, "report");
    within = r.within_tolerance ? 1 : 0;
  });
}

}  // extern "C"
