/* libswitch.i: the one SWIG interface of every binding (Python, Java, Go), over the C ABI
 * in capi/include/libswitch.h.
 *
 * The C ABI returns handles, numbers and strings through out parameters, which SWIG maps
 * differently in every language. So this interface adds a few `swb_` helpers that return
 * them instead, recording the call's status in a per-thread slot read by swb_status():
 * every language's thin layer checks it (or a returned sw_status) after each call and
 * turns a failure into its own error (libswitch.Error, LibSwitchException, error).
 * Arrays cross as (pointer, length) pairs mapped per language to numpy buffers, Java
 * arrays and Go slices; a NULL/None/nil/empty array is "absent" (masks, labels).
 */
%module libswitch_raw

%{
#include <stdlib.h>
#include <string.h>

#include "libswitch.h"

/* The status of this thread's last swb_ helper call. */
static __thread sw_status swb_last_status = SW_OK;

/* Whether this thread's last swb_model_validate was within tolerance. */
static __thread int swb_last_within = 0;

static int swb_record(sw_status s) {
  swb_last_status = s;
  return s == SW_OK;
}

/* A string from a (buf, cap, needed) call, malloc'ed (the bindings free it), or NULL. */
typedef sw_status (*swb_string_call)(const void* a, const void* b, int64_t i, char* buf,
                                     size_t cap, size_t* needed);
static char* swb_read_string(swb_string_call call, const void* a, const void* b, int64_t i) {
  size_t needed = 0;
  char* out;
  call(a, b, i, NULL, 0, &needed);
  if (needed == 0) { /* failed for another reason than the size: record why */
    swb_record(call(a, b, i, NULL, 0, &needed));
    return NULL;
  }
  out = (char*)malloc(needed);
  if (!out) {
    swb_last_status = SW_ERR_OUT_OF_MEMORY;
    return NULL;
  }
  if (!swb_record(call(a, b, i, out, needed, &needed))) {
    free(out);
    return NULL;
  }
  return out;
}

static sw_status swb_config_to_text_call(const void* c, const void* unused, int64_t i, char* buf,
                                         size_t cap, size_t* needed) {
  (void)unused;
  (void)i;
  return sw_config_to_text((const sw_config*)c, buf, cap, needed);
}
static sw_status swb_config_get_string_call(const void* c, const void* field, int64_t i,
                                            char* buf, size_t cap, size_t* needed) {
  (void)i;
  return sw_config_get_string((const sw_config*)c, (const char*)field, buf, cap, needed);
}
static sw_status swb_preset_name_call(const void* unused, const void* unused2, int64_t i,
                                      char* buf, size_t cap, size_t* needed) {
  (void)unused;
  (void)unused2;
  return sw_config_preset_name(i, buf, cap, needed);
}
static sw_status swb_parameter_name_call(const void* m, const void* unused, int64_t i, char* buf,
                                         size_t cap, size_t* needed) {
  (void)unused;
  return sw_model_parameter_name((const sw_model*)m, i, buf, cap, needed);
}
static sw_status swb_device_call(const void* m, const void* unused, int64_t i, char* buf,
                                 size_t cap, size_t* needed) {
  (void)unused;
  (void)i;
  return sw_model_device((const sw_model*)m, buf, cap, needed);
}
static sw_status swb_dtype_call(const void* m, const void* unused, int64_t i, char* buf,
                                size_t cap, size_t* needed) {
  (void)unused;
  (void)i;
  return sw_model_dtype((const sw_model*)m, buf, cap, needed);
}
static sw_status swb_latest_call(const void* root, const void* unused, int64_t i, char* buf,
                                 size_t cap, size_t* needed) {
  (void)unused;
  (void)i;
  return sw_checkpoint_latest((const char*)root, buf, cap, needed);
}
static sw_status swb_plan_call(const void* request, const void* format, int64_t i, char* buf,
                               size_t cap, size_t* needed) {
  (void)i;
  return sw_plan((const char*)request, (const char*)format, buf, cap, needed);
}

/* A batch from (pointer, length) arrays: length 0 means absent; a length that does not
 * match its shape is the C ABI's error to report, so it is checked here first. */
static int swb_batch(sw_batch* b, int64_t batch, int64_t input_len, int64_t target_len,
                     const int32_t* input_ids, size_t n_input_ids, const int32_t* attention_mask,
                     size_t n_attention_mask, const int32_t* decoder_input_ids,
                     size_t n_decoder_input_ids, const int32_t* decoder_attention_mask,
                     size_t n_decoder_attention_mask, const int32_t* labels, size_t n_labels) {
  const size_t in = (size_t)(batch > 0 && input_len > 0 ? batch * input_len : 0);
  const size_t out = (size_t)(batch > 0 && target_len > 0 ? batch * target_len : 0);
  SW_INIT_STRUCT(b);
  b->batch = batch;
  b->input_len = input_len;
  b->target_len = target_len;
  if ((n_input_ids && n_input_ids != in) || (n_attention_mask && n_attention_mask != in) ||
      (n_decoder_input_ids && n_decoder_input_ids != out) ||
      (n_decoder_attention_mask && n_decoder_attention_mask != out) ||
      (n_labels && n_labels != out)) {
    swb_last_status = SW_ERR_INVALID_ARGUMENT;
    return 0;
  }
  b->input_ids = n_input_ids ? input_ids : NULL;
  b->attention_mask = n_attention_mask ? attention_mask : NULL;
  b->decoder_input_ids = n_decoder_input_ids ? decoder_input_ids : NULL;
  b->decoder_attention_mask = n_decoder_attention_mask ? decoder_attention_mask : NULL;
  b->labels = n_labels ? labels : NULL;
  return 1;
}
%}

%include <stdint.i>

/* ------------------------------------------------------------------ arrays, per language */
#if defined(SWIGPYTHON)
%include "python/typemaps.i"
#elif defined(SWIGJAVA)
%include "java/typemaps.i"
#elif defined(SWIGGO)
%include "go/typemaps.i"
#endif

%newobject swb_config_to_text;
%newobject swb_config_get_string;
%newobject swb_preset_name;
%newobject swb_parameter_name;
%newobject swb_model_device;
%newobject swb_model_dtype;
%newobject swb_checkpoint_latest;
%newobject swb_plan;
%newobject swb_model_validate;
%typemap(newfree) char* "free($1);";

/* ------------------------------------------------------------------ the C ABI itself */
/* Functions whose arguments and results need no helper are wrapped as they are; the
 * others get a swb_ helper below. */
%ignore sw_config_preset;
%ignore sw_config_preset_count;
%ignore sw_config_preset_name;
%ignore sw_config_from_text;
%ignore sw_config_train_default;
%ignore sw_config_clone;
%ignore sw_config_kind_of;
%ignore sw_config_to_text;
%ignore sw_config_field_type;
%ignore sw_config_get_int;
%ignore sw_config_get_double;
%ignore sw_config_get_bool;
%ignore sw_config_get_string;
%ignore sw_cuda_device_count;
%ignore sw_model_create;
%ignore sw_model_create_with_dtype;
%ignore sw_model_copy_to;
%ignore sw_model_dtype;
%ignore sw_model_retain;
%ignore sw_model_config;
%ignore sw_model_seed;
%ignore sw_model_device;
%ignore sw_model_threads;
%ignore sw_model_parameter_count;
%ignore sw_model_num_parameters;
%ignore sw_model_parameter_name;
%ignore sw_model_parameter_shape;
%ignore sw_model_get_parameter;
%ignore sw_model_set_parameter;
%ignore sw_model_forward;
%ignore sw_model_get_gradient;
%ignore sw_result_logits_shape;
%ignore sw_result_logits;
%ignore sw_result_losses;
%ignore sw_result_num_routing_layers;
%ignore sw_result_routing;
%ignore sw_model_load;
%ignore sw_model_from_pretrained;
%ignore sw_checkpoint_latest;
%ignore sw_plan;
%ignore sw_model_import_hf;
%ignore sw_model_import_hf_with;
%ignore sw_trainer_create;
%ignore sw_trainer_step;
%ignore sw_trainer_evaluate;
%ignore sw_trainer_restore;
%ignore sw_trainer_model;
%ignore sw_model_generate;
%ignore sw_cancel_create;
%ignore sw_cancel_is_requested;
%ignore sw_model_validate;
%ignore sw_communicator_from_env;
%ignore sw_communicator_from_mpi;
%ignore sw_communicator_split;
%ignore sw_communicator_rank;
%ignore sw_communicator_size;
%ignore sw_batch;
%ignore sw_generate_options;
%ignore sw_model_parameter_dlpack;
%ignore sw_model_gradient_dlpack;
%ignore sw_result_logits_dlpack;
#define SW_API
%include "libswitch.h"

/* The per-language typemaps are written for these parameter names. */
%apply (float* OUT_F32, size_t LEN) { (float* values, size_t len) };
%apply (const float* IN_F32, size_t LEN) { (const float* values, size_t len) };
%apply (const int32_t* IN_I32, size_t LEN) {
  (const int32_t* input_ids, size_t n_input_ids),
  (const int32_t* attention_mask, size_t n_attention_mask),
  (const int32_t* decoder_input_ids, size_t n_decoder_input_ids),
  (const int32_t* decoder_attention_mask, size_t n_decoder_attention_mask),
  (const int32_t* labels, size_t n_labels)
};
%apply (int32_t* OUT_I32, size_t LEN) { (int32_t* out_ids, size_t n_out_ids) };
%apply (int64_t* OUT_I64, size_t LEN) {
  (int64_t* counts, size_t n_counts),
  (int64_t* lengths, size_t n_lengths)
};

/* ------------------------------------------------------------------ helpers */
%inline %{
/* SW_OK when the last swb_ call on this thread succeeded, else its status. */
int swb_status(void) { return swb_last_status; }

int64_t swb_preset_count(void) {
  int64_t n = 0;
  swb_record(sw_config_preset_count(&n));
  return n;
}
char* swb_preset_name(int64_t index) { return swb_read_string(swb_preset_name_call, NULL, NULL, index); }

sw_config* swb_config_preset(const char* name) {
  sw_config* c = NULL;
  swb_record(sw_config_preset(name, &c));
  return c;
}
sw_config* swb_config_from_text(int kind, const char* text) {
  sw_config* c = NULL;
  swb_record(sw_config_from_text((sw_config_kind)kind, text, &c));
  return c;
}
sw_config* swb_config_train_default(void) {
  sw_config* c = NULL;
  swb_record(sw_config_train_default(&c));
  return c;
}
sw_config* swb_config_clone(const sw_config* config) {
  sw_config* c = NULL;
  swb_record(sw_config_clone(config, &c));
  return c;
}
int swb_config_kind(const sw_config* config) {
  sw_config_kind kind = SW_CONFIG_MODEL;
  swb_record(sw_config_kind_of(config, &kind));
  return (int)kind;
}
char* swb_config_to_text(const sw_config* config) {
  return swb_read_string(swb_config_to_text_call, config, NULL, 0);
}
int swb_config_field_type(const sw_config* config, const char* field) {
  sw_field_type t = SW_FIELD_INT;
  swb_record(sw_config_field_type(config, field, &t));
  return (int)t;
}
int64_t swb_config_get_int(const sw_config* config, const char* field) {
  int64_t v = 0;
  swb_record(sw_config_get_int(config, field, &v));
  return v;
}
double swb_config_get_double(const sw_config* config, const char* field) {
  double v = 0;
  swb_record(sw_config_get_double(config, field, &v));
  return v;
}
int swb_config_get_bool(const sw_config* config, const char* field) {
  int v = 0;
  swb_record(sw_config_get_bool(config, field, &v));
  return v;
}
char* swb_config_get_string(const sw_config* config, const char* field) {
  return swb_read_string(swb_config_get_string_call, config, field, 0);
}

int swb_cuda_device_count(void) {
  int n = 0;
  swb_record(sw_cuda_device_count(&n));
  return n;
}

sw_model* swb_model_create(const sw_config* config, const char* device, uint64_t seed) {
  sw_model* m = NULL;
  swb_record(sw_model_create(config, device, seed, &m));
  return m;
}
sw_model* swb_model_create_with_dtype(const sw_config* config, const char* device,
                                      const char* dtype, uint64_t seed) {
  sw_model* m = NULL;
  swb_record(sw_model_create_with_dtype(config, device, dtype, seed, &m));
  return m;
}
sw_model* swb_model_copy_to(const sw_model* model, const char* device, const char* dtype) {
  sw_model* m = NULL;
  swb_record(sw_model_copy_to(model, device, dtype, &m));
  return m;
}
sw_model* swb_model_retain(sw_model* model) {
  sw_model* m = NULL;
  swb_record(sw_model_retain(model, &m));
  return m;
}
sw_model* swb_model_load(const char* path, const char* device) {
  sw_model* m = NULL;
  swb_record(sw_model_load(path, device, &m));
  return m;
}
sw_model* swb_model_from_pretrained(const char* path, const char* device) {
  sw_model* m = NULL;
  swb_record(sw_model_from_pretrained(path, device, &m));
  return m;
}
sw_model* swb_model_import_hf(const char* config_json_path, const char* weights_path,
                              const char* device) {
  sw_model* m = NULL;
  swb_record(sw_model_import_hf(config_json_path, weights_path, device, &m));
  return m;
}
sw_model* swb_model_import_hf_with(const char* config_json_path, const char* weights_path,
                                   const char* device, const char* model_overrides) {
  sw_model* m = NULL;
  swb_record(sw_model_import_hf_with(config_json_path, weights_path, device, model_overrides, &m));
  return m;
}
sw_config* swb_model_config(const sw_model* model) {
  sw_config* c = NULL;
  swb_record(sw_model_config(model, &c));
  return c;
}
uint64_t swb_model_seed(const sw_model* model) {
  uint64_t s = 0;
  swb_record(sw_model_seed(model, &s));
  return s;
}
char* swb_model_device(const sw_model* model) {
  return swb_read_string(swb_device_call, model, NULL, 0);
}
char* swb_model_dtype(const sw_model* model) {
  return swb_read_string(swb_dtype_call, model, NULL, 0);
}
int swb_model_threads(const sw_model* model) {
  int n = 0;
  swb_record(sw_model_threads(model, &n));
  return n;
}
int64_t swb_model_parameter_count(const sw_model* model) {
  int64_t n = 0;
  swb_record(sw_model_parameter_count(model, &n));
  return n;
}
int64_t swb_model_num_parameters(const sw_model* model) {
  int64_t n = 0;
  swb_record(sw_model_num_parameters(model, &n));
  return n;
}
char* swb_parameter_name(const sw_model* model, int64_t index) {
  return swb_read_string(swb_parameter_name_call, model, NULL, index);
}
/* Dimension i of a parameter (i = -1: the number of dimensions). */
int64_t swb_parameter_dim(const sw_model* model, const char* name, int i) {
  int64_t dims[8];
  int ndim = 0;
  if (!swb_record(sw_model_parameter_shape(model, name, dims, 8, &ndim))) return 0;
  if (i < 0) return ndim;
  if (i >= ndim || i >= 8) {
    swb_last_status = SW_ERR_OUT_OF_RANGE;
    return 0;
  }
  return dims[i];
}
int swb_get_parameter(const sw_model* model, const char* name, float* values, size_t len) {
  return swb_record(sw_model_get_parameter(model, name, values, len));
}
int swb_set_parameter(sw_model* model, const char* name, const float* values, size_t len) {
  return swb_record(sw_model_set_parameter(model, name, values, len));
}
int swb_get_gradient(const sw_model* model, const char* name, float* values, size_t len) {
  return swb_record(sw_model_get_gradient(model, name, values, len));
}

sw_result* swb_model_forward(sw_model* model, int64_t batch, int64_t input_len,
                             int64_t target_len, const int32_t* input_ids, size_t n_input_ids,
                             const int32_t* attention_mask, size_t n_attention_mask,
                             const int32_t* decoder_input_ids, size_t n_decoder_input_ids,
                             const int32_t* decoder_attention_mask,
                             size_t n_decoder_attention_mask, const int32_t* labels,
                             size_t n_labels, int train,
                             int compute_gradients) {
  sw_batch b;
  sw_result* r = NULL;
  if (!swb_batch(&b, batch, input_len, target_len, input_ids, n_input_ids, attention_mask, n_attention_mask,
                 decoder_input_ids, n_decoder_input_ids, decoder_attention_mask,
                 n_decoder_attention_mask, labels, n_labels))
    return NULL;
  swb_record(sw_model_forward(model, &b, train, compute_gradients, &r));
  return r;
}
int64_t swb_result_logits_dim(const sw_result* result, int i) {
  int64_t dims[3] = {0, 0, 0};
  if (!swb_record(sw_result_logits_shape(result, dims))) return 0;
  return dims[i < 0 || i > 2 ? 0 : i];
}
int swb_result_logits(const sw_result* result, float* values, size_t len) {
  return swb_record(sw_result_logits(result, values, len));
}
/* which: 0 loss, 1 ce, 2 aux, 3 z. */
double swb_result_loss(const sw_result* result, int which) {
  double v[4] = {0, 0, 0, 0};
  swb_record(sw_result_losses(result, &v[0], &v[1], &v[2], &v[3]));
  return v[which < 0 || which > 3 ? 0 : which];
}
int64_t swb_result_num_routing_layers(const sw_result* result) {
  int64_t n = 0;
  swb_record(sw_result_num_routing_layers(result, &n));
  return n;
}
sw_routing_stats swb_result_routing(const sw_result* result, int64_t layer, int64_t* counts,
                                    size_t n_counts) {
  sw_routing_stats s;
  SW_INIT_STRUCT(&s);
  swb_record(sw_result_routing(result, layer, &s, n_counts ? counts : NULL, n_counts));
  return s;
}

char* swb_checkpoint_latest(const char* root) {
  return swb_read_string(swb_latest_call, root, NULL, 0);
}

char* swb_plan(const char* request, const char* format) {
  return swb_read_string(swb_plan_call, request, format, 0);
}

sw_trainer* swb_trainer_create(sw_model* model, const sw_config* train_config) {
  sw_trainer* t = NULL;
  swb_record(sw_trainer_create(model, train_config, &t));
  return t;
}
sw_trainer* swb_trainer_restore(const char* path, const char* device) {
  sw_trainer* t = NULL;
  swb_record(sw_trainer_restore(path, device, &t));
  return t;
}
sw_model* swb_trainer_model(sw_trainer* trainer) {
  sw_model* m = NULL;
  swb_record(sw_trainer_model(trainer, &m));
  return m;
}
/* A step (evaluate 0) or an evaluation (1) on the given batch, or, with batch 0, on the
 * built-in data. */
sw_metrics swb_trainer_run(sw_trainer* trainer, int evaluate, int64_t batch, int64_t input_len,
                           int64_t target_len, const int32_t* input_ids, size_t n_input_ids,
                             const int32_t* attention_mask, size_t n_attention_mask,
                             const int32_t* decoder_input_ids, size_t n_decoder_input_ids,
                             const int32_t* decoder_attention_mask,
                             size_t n_decoder_attention_mask, const int32_t* labels,
                             size_t n_labels) {
  sw_metrics m;
  sw_batch b;
  SW_INIT_STRUCT(&m);
  if (batch != 0 && !swb_batch(&b, batch, input_len, target_len, input_ids, n_input_ids, attention_mask, n_attention_mask,
                 decoder_input_ids, n_decoder_input_ids, decoder_attention_mask,
                 n_decoder_attention_mask, labels, n_labels))
    return m;
  swb_record(evaluate ? sw_trainer_evaluate(trainer, batch ? &b : NULL, &m)
                      : sw_trainer_step(trainer, batch ? &b : NULL, &m));
  return m;
}

/* sw_model_validate: the report (malloc'ed), and whether every block was within tolerance
 * in swb_validate_within() (per thread, like swb_status). */
int swb_validate_within(void) { return swb_last_within; }
char* swb_model_validate(const sw_model* model, int64_t batch, int64_t input_len,
                         int64_t target_len, const int32_t* input_ids, size_t n_input_ids,
                         const int32_t* attention_mask, size_t n_attention_mask,
                         const int32_t* decoder_input_ids, size_t n_decoder_input_ids,
                         const int32_t* decoder_attention_mask,
                         size_t n_decoder_attention_mask, const int32_t* labels,
                         size_t n_labels, const char* device, const char* dtype,
                         double tolerance) {
  sw_batch b;
  size_t cap = 1 << 16, needed = 0;
  char* report = NULL;
  swb_last_within = 0;
  if (!swb_batch(&b, batch, input_len, target_len, input_ids, n_input_ids, attention_mask,
                 n_attention_mask, decoder_input_ids, n_decoder_input_ids,
                 decoder_attention_mask, n_decoder_attention_mask, labels, n_labels))
    return NULL;
  /* The comparison runs at each call: a buffer large enough for any report first, and
   * a second run only if that was short. */
  for (int attempt = 0; attempt < 2; ++attempt) {
    char* grown = (char*)realloc(report, cap);
    if (!grown) {
      free(report);
      swb_last_status = SW_ERR_OUT_OF_MEMORY;
      return NULL;
    }
    report = grown;
    const sw_status s = sw_model_validate(model, &b, device, dtype, tolerance, report, cap,
                                          &needed, &swb_last_within);
    if (s == SW_OK) {
      swb_record(s);
      return report;
    }
    if (needed <= cap) {
      free(report);
      swb_record(s);
      return NULL;
    }
    cap = needed;
  }
  free(report);
  swb_last_status = SW_ERR_INTERNAL;
  return NULL;
}

sw_cancel* swb_cancel_create(void) {
  sw_cancel* c = NULL;
  swb_record(sw_cancel_create(&c));
  return c;
}
int swb_cancel_is_requested(const sw_cancel* cancel) {
  int r = 0;
  swb_record(sw_cancel_is_requested(cancel, &r));
  return r;
}

sw_communicator* swb_communicator_from_env(void) {
  sw_communicator* c = NULL;
  swb_record(sw_communicator_from_env(&c));
  return c;
}
/* mpi_comm_address: the address of an MPI_Comm (mpi4py's MPI._addressof(comm)). */
sw_communicator* swb_communicator_from_mpi(uint64_t mpi_comm_address) {
  sw_communicator* c = NULL;
  swb_record(sw_communicator_from_mpi((const void*)(uintptr_t)mpi_comm_address, &c));
  return c;
}
sw_communicator* swb_communicator_split(const sw_communicator* comm, int color, int key) {
  sw_communicator* c = NULL;
  swb_record(sw_communicator_split(comm, color, key, &c));
  return c;
}
int swb_communicator_rank(const sw_communicator* comm) {
  int r = 0;
  swb_record(sw_communicator_rank(comm, &r));
  return r;
}
int swb_communicator_size(const sw_communicator* comm) {
  int n = 0;
  swb_record(sw_communicator_size(comm, &n));
  return n;
}

/* Generation (sw_model_generate's options): out is [batch, max_new_tokens], lengths
 * [batch]. */
int swb_model_generate(sw_model* model, int64_t batch, int64_t input_len,
                       const int32_t* input_ids, size_t n_input_ids,
                       const int32_t* attention_mask, size_t n_attention_mask,
                       int64_t max_new_tokens, int32_t vocab_limit, int32_t* out_ids,
                       size_t n_out_ids, int64_t* lengths, size_t n_lengths, int64_t num_beams,
                       double temperature, int64_t top_k, double top_p, uint64_t seed,
                       int64_t min_new_tokens, double length_penalty, int dropless,
                       int early_stopping, sw_cancel* cancel) {
  sw_batch b;
  sw_generate_options o;
  SW_INIT_STRUCT(&o);
  o.max_new_tokens = max_new_tokens;
  o.num_beams = num_beams;
  o.temperature = temperature;
  o.top_k = top_k;
  o.top_p = top_p;
  o.seed = seed;
  o.min_new_tokens = min_new_tokens;
  o.length_penalty = length_penalty;
  o.dropless = dropless;
  o.early_stopping = early_stopping;
  o.vocab_limit = vocab_limit;
  o.cancel = cancel; /* may be NULL */
  if (!swb_batch(&b, batch, input_len, 1, input_ids, n_input_ids, attention_mask,
                 n_attention_mask, NULL, 0, NULL, 0, NULL, 0))
    return 0;
  return swb_record(sw_model_generate(model, &b, &o, out_ids, n_out_ids, lengths, n_lengths));
}
%}

/* ------------------------------------------------------------------ DLPack, Python */
#if defined(SWIGPYTHON)
/* PyCapsules named "dltensor" around the C ABI's DLManagedTensor views (the DLPack
 * protocol's __dlpack__): a consumer that takes one renames it "used_dltensor" and calls
 * the deleter itself; an unconsumed capsule calls it when collected. These helpers build
 * Python objects, so SWIG keeps the GIL (%nothread); they release it themselves around the
 * library call, which may wait for a training step or a GPU. */
%{
#include <dlpack/dlpack.h>

static void swb_dlpack_capsule_free(PyObject* capsule) {
  PyObject *type, *value, *traceback;
  DLManagedTensor* t;
  if (!PyCapsule_IsValid(capsule, "dltensor")) return; /* consumed ("used_dltensor") */
  PyErr_Fetch(&type, &value, &traceback); /* a consumer's pending error stays */
  t = (DLManagedTensor*)PyCapsule_GetPointer(capsule, "dltensor");
  if (t && t->deleter) t->deleter(t);
  PyErr_Restore(type, value, traceback);
}

static PyObject* swb_dlpack_capsule(sw_status status, DLManagedTensor* t) {
  PyObject* capsule;
  if (!swb_record(status)) Py_RETURN_NONE;
  capsule = PyCapsule_New(t, "dltensor", swb_dlpack_capsule_free);
  if (!capsule) t->deleter(t);
  return capsule;
}
%}
%nothread swb_parameter_dlpack;
%nothread swb_gradient_dlpack;
%nothread swb_result_logits_dlpack;
%nothread swb_dlpack_describe;
%inline %{
PyObject* swb_parameter_dlpack(sw_model* model, const char* name) {
  DLManagedTensor* t = NULL;
  sw_status status;
  Py_BEGIN_ALLOW_THREADS
  status = sw_model_parameter_dlpack(model, name, &t);
  Py_END_ALLOW_THREADS
  return swb_dlpack_capsule(status, t);
}
PyObject* swb_gradient_dlpack(const sw_model* model, const char* name) {
  DLManagedTensor* t = NULL;
  sw_status status;
  Py_BEGIN_ALLOW_THREADS
  status = sw_model_gradient_dlpack(model, name, &t);
  Py_END_ALLOW_THREADS
  return swb_dlpack_capsule(status, t);
}
PyObject* swb_result_logits_dlpack(const sw_result* result) {
  DLManagedTensor* t = NULL;
  sw_status status;
  Py_BEGIN_ALLOW_THREADS
  status = sw_result_logits_dlpack(result, &t);
  Py_END_ALLOW_THREADS
  return swb_dlpack_capsule(status, t);
}
/* An unconsumed capsule's tensor: (dtype, shape, device type, device id, data address),
 * dtype "f32", "f64", "bf16", "i32" or "i64". */
PyObject* swb_dlpack_describe(PyObject* capsule) {
  const DLTensor* d;
  const char* dtype = "?";
  PyObject* shape;
  int i;
  if (!PyCapsule_IsValid(capsule, "dltensor")) {
    PyErr_SetString(PyExc_ValueError, "swb_dlpack_describe: not an unconsumed dltensor capsule");
    return NULL;
  }
  d = &((DLManagedTensor*)PyCapsule_GetPointer(capsule, "dltensor"))->dl_tensor;
  if (d->dtype.code == kDLFloat && d->dtype.bits == 32) dtype = "f32";
  if (d->dtype.code == kDLFloat && d->dtype.bits == 64) dtype = "f64";
  if (d->dtype.code == kDLBfloat && d->dtype.bits == 16) dtype = "bf16";
  if (d->dtype.code == kDLInt && d->dtype.bits == 32) dtype = "i32";
  if (d->dtype.code == kDLInt && d->dtype.bits == 64) dtype = "i64";
  shape = PyTuple_New(d->ndim);
  if (!shape) return NULL;
  for (i = 0; i < d->ndim; ++i) PyTuple_SET_ITEM(shape, i, PyLong_FromLongLong(d->shape[i]));
  return Py_BuildValue("(sNiiK)", dtype, shape, (int)d->device.device_type,
                       (int)d->device.device_id,
                       (unsigned long long)(uintptr_t)((char*)d->data + d->byte_offset));
}
%}
#endif
