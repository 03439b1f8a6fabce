/* libswitch.h: the stable C ABI of libswitch, a library for building, training,
 * checkpointing and running Switch Transformers (sparse mixture-of-experts models with
 * top-1 routing).
 *
 * Conventions
 * - Every fallible function returns an sw_status; SW_OK (0) is success. On failure,
 *   sw_last_error() gives a message naming the argument or field and the bad value. Out
 *   parameters are written only on success.
 * - Objects are opaque handles made by sw_<type>_create-like functions and released by
 *   sw_<type>_destroy, which accepts NULL. Every handle an out parameter returns is owned
 *   by the caller, who destroys it. An object that needs another keeps it alive: a trainer
 *   holds its model, so destroying the model handle first is safe.
 * - Strings passed in are NUL-terminated UTF-8 and borrowed for the call. Strings passed
 *   out are written into caller buffers: (buf, cap, needed) writes at most cap bytes
 *   including the NUL and sets *needed (when not NULL) to the full size including the
 *   NUL; a buffer too small (or NULL with cap 0) is SW_ERR_INVALID_ARGUMENT, *needed is
 *   still set, so a caller may ask for the size first.
 * - Arrays are caller buffers with their length in elements; a length that does not match
 *   what the call needs is SW_ERR_INVALID_ARGUMENT naming both numbers.
 * - Public structs start with uint32_t struct_size, which the caller sets to sizeof of the
 *   struct as it knows it (SW_INIT_STRUCT does both); the library reads and writes only
 *   that many bytes, so a program built against an older header keeps working.
 * - Token ids and masks are int32, row-major [batch, length]. Labels of -100 are ignored.
 *
 * Thread safety (no handle may be destroyed while a call on it is in flight; give each
 * thread its own handle with sw_model_retain when lifetimes are unclear)
 * - sw_config: not synchronised; do not use one config from two threads while either
 *   changes it. Reading one config from several threads is safe.
 * - sw_model: its functions may be called from several threads at once. Calls that only
 *   read (forward without gradients, generate, get_parameter, save, export) run
 *   concurrently; calls that change the model (set_parameter, load_parameters, a forward
 *   with gradients, a trainer step) run alone, after the reads in flight. Each call uses
 *   the model's thread count (sw_model_set_threads), so N concurrent calls use N times it.
 * - sw_result: immutable; safe to read from many threads.
 * - sw_trainer: its calls are serialised internally; use it from one thread at a time.
 * - sw_last_error() is per thread.
 *
 * ABI: functions and enum values are only ever appended; struct fields only appended.
 * SW_ABI_VERSION changes (and with it the SONAME libswitch.so.N) on any break.
 */
#ifndef LIBSWITCH_H_
#define LIBSWITCH_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(SW_BUILDING_LIBRARY)
#define SW_API __declspec(dllexport)
#elif defined(_WIN32)
#define SW_API __declspec(dllimport)
#elif defined(__GNUC__)
#define SW_API __attribute__((visibility("default")))
#else
#define SW_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SW_VERSION_MAJOR 0
#define SW_VERSION_MINOR 1
#define SW_VERSION_PATCH 0
#define SW_ABI_VERSION 1

/* Sets struct_size and zeroes the rest: `sw_batch b; SW_INIT_STRUCT(&b);`. */
#define SW_INIT_STRUCT(p)                                                                         \
  do {                                                                                            \
    unsigned char* sw_init_bytes_ = (unsigned char*)(p);                                          \
    size_t sw_init_i_;                                                                            \
    for (sw_init_i_ = 0; sw_init_i_ < sizeof(*(p)); ++sw_init_i_) sw_init_bytes_[sw_init_i_] = 0; \
    (p)->struct_size = (uint32_t)sizeof(*(p));                                                    \
  } while (0)

/* ---------------------------------------------------------------- status, version */

/* Append-only: values never change meaning. Every enum of this header ends with a
 * *_ENUM_MAX_ value that is never used: it makes the enum's range the whole int, so a
 * caller's out-of-range value (999) reaches the library as a value to refuse, not as
 * undefined behaviour in C++. */
typedef enum sw_status {
  SW_OK = 0,
  SW_ERR_INVALID_ARGUMENT = 1, /* NULL handle, short buffer, bad field or value */
  SW_ERR_OUT_OF_RANGE = 2,     /* token id >= vocab, layer index, enum value, ... */
  SW_ERR_NOT_FOUND = 3,        /* parameter name, preset, file, checkpoint */
  SW_ERR_IO = 4,
  SW_ERR_CORRUPT = 5,     /* checksum, truncated shard, unparsable manifest */
  SW_ERR_UNSUPPORTED = 6, /* e.g. "cuda:0" in a build without CUDA */
  SW_ERR_DEVICE = 7,      /* CUDA / cuBLAS failure */
  SW_ERR_OUT_OF_MEMORY = 8,
  SW_ERR_DISTRIBUTED = 9, /* MPI / NCCL failure */
  SW_ERR_NUMERIC = 10,    /* NaN / Inf */
  SW_ERR_INTERNAL = 11,
  SW_ERR_CANCELLED = 12, /* stopped by sw_cancel_request before it finished */
  SW_STATUS_ENUM_MAX_ = 0x7fffffff
} sw_status;

/* "SW_OK", "SW_ERR_INVALID_ARGUMENT", ...; "SW_ERR_UNKNOWN" for other values. Static. */
SW_API const char* sw_status_string(sw_status status);
/* The message of this thread's last failed call ("" if none). Valid until this thread's
 * next sw_ call. */
SW_API const char* sw_last_error(void);
/* "0.1.0": the library's version (static string). */
SW_API const char* sw_version(void);
/* The ABI version the library was built with; compare with SW_ABI_VERSION. */
SW_API int sw_abi_version(void);

/* ---------------------------------------------------------------- devices */

/* 1 when the library was built with CUDA, else 0. */
SW_API int sw_cuda_built(void);
/* CUDA devices visible (0 without CUDA or without a device). */
SW_API sw_status sw_cuda_device_count(int* out);

/* ---------------------------------------------------------------- configs */

/* A ModelConfig or a TrainConfig (core/proto/libswitch.proto). */
typedef struct sw_config sw_config;
typedef enum sw_config_kind {
  SW_CONFIG_MODEL = 0,
  SW_CONFIG_TRAIN = 1,
  SW_CONFIG_KIND_ENUM_MAX_ = 0x7fffffff
} sw_config_kind;
typedef enum sw_field_type {
  SW_FIELD_INT = 0,
  SW_FIELD_DOUBLE = 1,
  SW_FIELD_STRING = 2,
  SW_FIELD_BOOL = 3,
  SW_FIELD_ENUM = 4, /* get/set as a string (value name) or an int (value number) */
  SW_FIELD_MESSAGE = 5,
  SW_FIELD_TYPE_ENUM_MAX_ = 0x7fffffff
} sw_field_type;

/* A model preset compiled into the library ("tiny", "switch-base-8", ...). Unknown:
 * SW_ERR_NOT_FOUND listing the known names. */
SW_API sw_status sw_config_preset(const char* name, sw_config** out);
/* Number of presets, and the i-th name. */
SW_API sw_status sw_config_preset_count(int64_t* out);
SW_API sw_status sw_config_preset_name(int64_t index, char* buf, size_t cap, size_t* needed);
/* Protobuf text over the defaults, validated. Syntax errors name line and column. */
SW_API sw_status sw_config_from_text(sw_config_kind kind, const char* text, sw_config** out);
/* A TrainConfig of defaults (model_preset "tiny"). */
SW_API sw_status sw_config_train_default(sw_config** out);
SW_API sw_status sw_config_clone(const sw_config* config, sw_config** out);
SW_API sw_status sw_config_kind_of(const sw_config* config, sw_config_kind* out);
/* Every field as protobuf text, defaults included. */
SW_API sw_status sw_config_to_text(const sw_config* config, char* buf, size_t cap, size_t* needed);
/* SW_OK, or SW_ERR_INVALID_ARGUMENT naming the field and the rule it breaks. */
SW_API sw_status sw_config_validate(const sw_config* config);
/* Typed field access by name; nested fields by path ("model.num_experts"). Setters do not
 * validate (a config may pass through invalid states); sw_config_validate and every
 * consumer of a config do. A wrong type, unknown name or out-of-range value changes
 * nothing. */
SW_API sw_status sw_config_field_type(const sw_config* config, const char* field,
                                      sw_field_type* out);
SW_API sw_status sw_config_get_int(const sw_config* config, const char* field, int64_t* out);
SW_API sw_status sw_config_get_double(const sw_config* config, const char* field, double* out);
SW_API sw_status sw_config_get_bool(const sw_config* config, const char* field, int* out);
SW_API sw_status sw_config_get_string(const sw_config* config, const char* field, char* buf,
                                      size_t cap, size_t* needed);
SW_API sw_status sw_config_set_int(sw_config* config, const char* field, int64_t value);
SW_API sw_status sw_config_set_double(sw_config* config, const char* field, double value);
SW_API sw_status sw_config_set_bool(sw_config* config, const char* field, int value);
SW_API sw_status sw_config_set_string(sw_config* config, const char* field, const char* value);
SW_API void sw_config_destroy(sw_config* config);

/* ---------------------------------------------------------------- batches */

/* Caller-owned views, read during the call only. Masks may be NULL (all ones); labels
 * may be NULL (no loss). Ids must lie in [0, vocab_size). */
typedef struct sw_batch {
  uint32_t struct_size;
  uint32_t reserved;                     /* zero; keeps the layout the same on every ABI */
  int64_t batch;                         /* sequences */
  int64_t input_len;                     /* encoder tokens per sequence */
  int64_t target_len;                    /* decoder tokens per sequence */
  const int32_t* input_ids;              /* [batch, input_len] */
  const int32_t* attention_mask;         /* [batch, input_len], 1 token / 0 padding */
  const int32_t* decoder_input_ids;      /* [batch, target_len] */
  const int32_t* decoder_attention_mask; /* [batch, target_len] */
  const int32_t* labels;                 /* [batch, target_len], -100 ignored */
} sw_batch;

/* ---------------------------------------------------------------- models */

typedef struct sw_model sw_model;

/* A new model of config (SW_CONFIG_MODEL), parameters initialised from seed (docs/MATH.md §4),
 * on device "cpu" or "cuda:N" (SW_ERR_UNSUPPORTED in a build without CUDA). */
SW_API sw_status sw_model_create(const sw_config* config, const char* device, uint64_t seed,
                                 sw_model** out);
/* The same in dtype: "f32" (trains and runs anywhere), "f64" (cpu: gradient checks) or
 * "bf16" (GPU: runs, with the router in f32, and gives f32 gradients; a trainer takes an f32
 * model and trains it in bf16 under the train config's precision BF16). A dtype the device
 * cannot hold is SW_ERR_UNSUPPORTED naming both. */
SW_API sw_status sw_model_create_with_dtype(const sw_config* config, const char* device,
                                            const char* dtype, uint64_t seed, sw_model** out);
/* A new model with this model's config, seed and weights on device in dtype (a
 * GPU-trained model's cpu copy, a bf16 copy for inference). The copy owns its weights. */
SW_API sw_status sw_model_copy_to(const sw_model* model, const char* device, const char* dtype,
                                  sw_model** out);
/* Another handle to the same model (both must be destroyed). */
SW_API sw_status sw_model_retain(sw_model* model, sw_model** out);
SW_API void sw_model_destroy(sw_model* model);
/* A copy of the model's config (caller destroys). */
SW_API sw_status sw_model_config(const sw_model* model, sw_config** out);
SW_API sw_status sw_model_seed(const sw_model* model, uint64_t* out);
SW_API sw_status sw_model_device(const sw_model* model, char* buf, size_t cap, size_t* needed);
/* "f32", "f64" or "bf16". */
SW_API sw_status sw_model_dtype(const sw_model* model, char* buf, size_t cap, size_t* needed);
/* The most CPU threads a model's calls may use (sw_model_set_threads). */
#define SW_MAX_THREADS 4096
/* CPU threads each of this model's calls uses, in [0, SW_MAX_THREADS]; 0 (the default)
 * leaves the calling thread's OpenMP setting (OMP_NUM_THREADS, else every core). Applies
 * to later calls. */
SW_API sw_status sw_model_set_threads(sw_model* model, int threads);
SW_API sw_status sw_model_threads(const sw_model* model, int* out);

/* Scalars in all parameters, and the number of named parameter tensors. */
SW_API sw_status sw_model_parameter_count(const sw_model* model, int64_t* out);
SW_API sw_status sw_model_num_parameters(const sw_model* model, int64_t* out);
/* The i-th parameter's name (HF naming: "encoder.block.1.layer.1.mlp.router.classifier.weight"). */
SW_API sw_status sw_model_parameter_name(const sw_model* model, int64_t index, char* buf,
                                         size_t cap, size_t* needed);
/* The shape of a named parameter: *ndim is set; dims gets min(*ndim, cap) sizes. */
SW_API sw_status sw_model_parameter_shape(const sw_model* model, const char* name, int64_t* dims,
                                          int cap, int* ndim);
/* Read / write a parameter as f32 (converted from and to the model's dtype); len must be
 * its element count. SW_ERR_NOT_FOUND for an unknown name. */
SW_API sw_status sw_model_get_parameter(const sw_model* model, const char* name, float* buf,
                                        size_t len);
SW_API sw_status sw_model_set_parameter(sw_model* model, const char* name, const float* buf,
                                        size_t len);

/* The outputs of one forward pass. */
typedef struct sw_result sw_result;

/* One forward pass. train: dropout, jitter and the train capacity factor, with new noise
 * at every call (a per-model counter keys the random streams); else eval mode, which is
 * deterministic. compute_gradients: also the gradient of the loss w.r.t. every parameter
 * (labels required; CPU models), kept on the model for sw_model_get_gradient until the
 * next forward with gradients. */
SW_API sw_status sw_model_forward(sw_model* model, const sw_batch* batch, int train,
                                  int compute_gradients, sw_result** out);
/* The gradient of the last forward with compute_gradients, as f32; len its element count.
 * SW_ERR_NOT_FOUND when none has run. */
SW_API sw_status sw_model_get_gradient(const sw_model* model, const char* name, float* buf,
                                       size_t len);

/* Logits [batch, target_len, vocab_size] as f32: dims gets the three sizes. */
SW_API sw_status sw_result_logits_shape(const sw_result* result, int64_t dims[3]);
SW_API sw_status sw_result_logits(const sw_result* result, float* buf, size_t len);
/* loss = ce + aux + z (aux and z with their coefficients); ce is 0 without labels. Any
 * pointer may be NULL. */
SW_API sw_status sw_result_losses(const sw_result* result, double* loss, double* ce, double* aux,
                                  double* z);

typedef enum sw_stack { SW_ENCODER = 0, SW_DECODER = 1, SW_STACK_ENUM_MAX_ = 0x7fffffff } sw_stack;
/* One sparse layer's routing in a forward pass. */
typedef struct sw_routing_stats {
  uint32_t struct_size;
  int32_t stack; /* sw_stack */
  int64_t block;
  int64_t num_experts;
  int64_t capacity;   /* per expert per routing group */
  int64_t group_size; /* tokens per routing group */
  int64_t tokens;     /* routed tokens */
  double dropped_fraction;
  double router_entropy; /* mean over tokens */
  double aux_loss;       /* this layer's terms (AUX_PER_LAYER), coefficient included */
  double z_loss;
} sw_routing_stats;
/* Sparse layers in the result (encoder first). */
SW_API sw_status sw_result_num_routing_layers(const sw_result* result, int64_t* out);
/* Layer `layer`'s statistics; tokens_per_expert (may be NULL) gets num_experts argmax
 * counts before capacity, len must then be num_experts. */
SW_API sw_status sw_result_routing(const sw_result* result, int64_t layer, sw_routing_stats* out,
                                   int64_t* tokens_per_expert, size_t len);
SW_API void sw_result_destroy(sw_result* result);

/* ---------------------------------------------------------------- DLPack */

/* Views without a copy, as DLPack tensors (dlpack.h, https://github.com/dmlc/dlpack, v0.6
 * or later: the DLManagedTensor struct; include <dlpack/dlpack.h> to read one). Each call
 * returns a new DLManagedTensor that the caller owns and releases with
 * (*out)->deleter(*out), exactly once, from any thread. It describes the tensor in place:
 * its dtype (kDLFloat 32 or 64, kDLBfloat 16; a bf16 model's parameters are bf16 but for
 * the f32 router biases), its device (kDLCPU, or kDLCUDA with the ordinal of a "cuda:N"
 * model), C-contiguous (strides NULL), byte_offset 0.
 *
 * Lifetime: the memory stays valid until the deleter runs, even after the model or the
 * result is destroyed (the view holds a reference to it).
 * Aliasing: a parameter's view IS the parameter. Training steps, sw_model_set_parameter and
 * sw_model_load_parameters write into the same memory, so the view shows them, and writes
 * through the view change the model. Nothing synchronises a reader of the view with a
 * trainer or with a writer: do not read it while a step runs in another thread, nor write
 * it while the model is in use. A CUDA view is taken once the library's queued work on
 * that GPU is done (the call waits for its stream); the library's later calls run on its
 * own stream, unordered with the consumer's; release a CUDA view only after the
 * consumer's work on it is done, since the library may reuse the memory at once.
 * A gradient's view is the gradient of the forward that was last when it was taken (the
 * next forward with gradients makes new ones); the logits' view is the result's f32 host
 * copy. */
struct DLManagedTensor;
/* A named parameter. SW_ERR_NOT_FOUND for an unknown name. */
SW_API sw_status sw_model_parameter_dlpack(sw_model* model, const char* name,
                                           struct DLManagedTensor** out);
/* The gradient of the last forward with compute_gradients; SW_ERR_NOT_FOUND when none. */
SW_API sw_status sw_model_gradient_dlpack(const sw_model* model, const char* name,
                                          struct DLManagedTensor** out);
/* The logits [batch, target_len, vocab_size], f32 on the CPU. */
SW_API sw_status sw_result_logits_dlpack(const sw_result* result, struct DLManagedTensor** out);

/* ---------------------------------------------------------------- checkpoints, HF */

/* Saves the model (no optimizer state) as a checkpoint step directory under root. */
SW_API sw_status sw_model_save(const sw_model* model, const char* root);
/* A model from a checkpoint directory, or from the latest one under a root, onto device.
 * Every byte is verified: a corrupt checkpoint is SW_ERR_CORRUPT naming the tensor. */
SW_API sw_status sw_model_load(const char* path, const char* device, sw_model** out);
/* A model from whatever path holds, onto device: an HF model directory (config.json beside
 * model.safetensors or a sharded index; as sw_model_import_hf), a libswitch checkpoint
 * directory or root (as sw_model_load), or a run directory of `switch train --out` (the
 * latest checkpoint under its checkpoints/). A path holding none of these is
 * SW_ERR_NOT_FOUND naming what was looked for. */
SW_API sw_status sw_model_from_pretrained(const char* path, const char* device, sw_model** out);
/* Parameters from a checkpoint into an existing model. strict: every parameter present and
 * nothing else; else only those whose names match (shapes must still agree). All or
 * nothing: the model is unchanged on error. */
SW_API sw_status sw_model_load_parameters(sw_model* model, const char* path, int strict);
/* The step directory `latest` points to under root; SW_ERR_NOT_FOUND when none. */
SW_API sw_status sw_checkpoint_latest(const char* root, char* buf, size_t cap, size_t* needed);
/* HuggingFace SwitchTransformers: config.json and safetensors (a file, a sharded index or
 * a directory holding either). */
SW_API sw_status sw_model_import_hf(const char* config_json_path, const char* weights_path,
                                    const char* device, sw_model** out);
/* The same with model_overrides, ModelConfig fields in protobuf text ("" for none) that
 * replace the HF config's, e.g. "aux_loss_mode: AUX_PER_LAYER" to train the imported model
 * (the HF loss modes have no backward) or "capacity_mode: CAPACITY_FACTOR". A field that
 * changes a parameter's shape fails naming the tensor. */
SW_API sw_status sw_model_import_hf_with(const char* config_json_path, const char* weights_path,
                                         const char* device, const char* model_overrides,
                                         sw_model** out);
/* config.json and model.safetensors into dir (created if needed). */
SW_API sw_status sw_model_export_hf(const sw_model* model, const char* dir);
/* The same; a model whose routing transformers cannot reproduce (a capacity factor or
 * dropless capacity, routing groups other than one sequence) is SW_ERR_UNSUPPORTED naming
 * the setting unless allow_routing_change is 1 (sw_model_export_hf refuses it always). */
SW_API sw_status sw_model_export_hf_with(const sw_model* model, const char* dir,
                                         int allow_routing_change);

/* ---------------------------------------------------------------- training */

typedef struct sw_trainer sw_trainer;

typedef struct sw_metrics {
  uint32_t struct_size;
  uint32_t reserved; /* zero; keeps the layout the same on every ABI */
  int64_t step;      /* optimizer steps taken */
  double loss, ce, aux, z;
  double grad_norm;     /* before clipping (0 for evaluation) */
  double learning_rate; /* of the step (0 for evaluation) */
  double dropped_fraction;
  int64_t tokens; /* encoder + decoder tokens */
  double seconds;
  double tokens_per_second;
  int32_t skipped;       /* the loss or gradient was not finite: nothing was updated */
  int32_t reserved2;     /* zero */
  int64_t skipped_steps; /* skipped so far by this trainer (max_bad_steps in a row: an error) */
} sw_metrics;

/* A trainer for model with train_config (SW_CONFIG_TRAIN: optimizer, schedule, batch,
 * data). The config's model_preset and model fields are not used: the trainer trains the
 * model it is given, where it is, and keeps it alive; a device set in the config must be
 * the model's (SW_ERR_INVALID_ARGUMENT otherwise). Training runs on
 * f32 models (f64 on the cpu) on the cpu or one GPU, with the per-layer aux loss
 * (AUX_PER_LAYER), in this version: others are SW_ERR_UNSUPPORTED. A config naming a
 * distill_teacher (a checkpoint with the model's vocabulary) makes a distillation trainer
 * (cpu): each step mixes the teacher's probabilities into the target with
 * distill_teacher_weight, and with distill_init_from_teacher (the default) the model starts
 * here from every teacher parameter of the same name and shape (a trainer made by
 * sw_trainer_restore keeps the saved model and does not start again from the teacher). */
SW_API sw_status sw_trainer_create(sw_model* model, const sw_config* train_config,
                                   sw_trainer** out);
/* One optimizer step on batch (labels required; split into the config's micro_batches),
 * or, with batch NULL, on the next batch of the built-in span-corruption pipeline (the
 * config's corpus and tokenizer, prepared at the first such call). A failed step changes
 * nothing: the pipeline stays on the same batch. out may be NULL. */
SW_API sw_status sw_trainer_step(sw_trainer* trainer, const sw_batch* batch, sw_metrics* out);
/* The loss on batch, or with NULL on the pipeline's held-out batches; nothing updated. */
SW_API sw_status sw_trainer_evaluate(sw_trainer* trainer, const sw_batch* batch, sw_metrics* out);
/* Saves model, optimizer state, step and data position as a checkpoint under root, and,
 * once the built-in pipeline is in use, its tokenizer as root/tokenizer.model;
 * sw_checkpoint_latest(root) then names the checkpoint. Keeps the config's
 * keep_checkpoints newest checkpoints under root. */
SW_API sw_status sw_trainer_save(sw_trainer* trainer, const char* root);
/* From now on each step and evaluation of this trainer is also written to a TensorBoard
 * event file in dir (created if needed; a new events.out.tfevents.* file per call, made
 * at the first record): the losses, learning rate, gradient norm, tokens/s, dropped
 * fraction, each layer's router entropy and expert-load histogram (`tensorboard --logdir
 * dir`). The file starts a session at its first record's step, so TensorBoard drops what
 * earlier files in dir logged from that step on (a restored trainer logging where the
 * run it continues did). dir NULL or "": stop writing. Under a parallel layout only world
 * rank 0 writes. A step whose record cannot be written returns SW_ERR_IO after the step
 * was taken (out holds its metrics). */
SW_API sw_status sw_trainer_log_to(sw_trainer* trainer, const char* dir);
/* A trainer continuing a checkpoint written by sw_trainer_save (or `switch train`): its
 * model, optimizer state, step and data position; the tokenizer from root/tokenizer.model
 * (or root/../tokenizer.model, the layout of `switch train --out`). device: "cpu" or
 * "cuda:N", whichever the checkpoint was saved from. */
SW_API sw_status sw_trainer_restore(const char* path, const char* device, sw_trainer** out);
/* A new handle to the trainer's model (caller destroys it). */
SW_API sw_status sw_trainer_model(sw_trainer* trainer, sw_model** out);
SW_API void sw_trainer_destroy(sw_trainer* trainer);

/* ---------------------------------------------------------------- running, validating */

/* A cancellation flag for long calls (sw_model_generate's options.cancel). Thread-safe:
 * one thread may request while another call checks it. It stays requested until reset;
 * destroy it only after the calls that use it have returned. */
typedef struct sw_cancel sw_cancel;
SW_API sw_status sw_cancel_create(sw_cancel** out);
SW_API sw_status sw_cancel_request(sw_cancel* cancel);
SW_API sw_status sw_cancel_reset(sw_cancel* cancel);
/* *out = 1 when requested (and not reset since), else 0. */
SW_API sw_status sw_cancel_is_requested(const sw_cancel* cancel, int* out);
SW_API void sw_cancel_destroy(sw_cancel* cancel);

/* Bounds of one generation request; a step's cost does not grow with the length. */
#define SW_MAX_NEW_TOKENS 65536
#define SW_MAX_BEAMS 1024
/* Zero-initialised (SW_INIT_STRUCT) and max_new_tokens set: greedy decoding. */
typedef struct sw_generate_options {
  uint32_t struct_size;
  uint32_t reserved;      /* zero; keeps the layout the same on every ABI */
  int64_t max_new_tokens; /* in [1, SW_MAX_NEW_TOKENS] */
  int64_t num_beams;      /* 0 or 1: greedy or sampling; > 1: beam search; <= SW_MAX_BEAMS */
  int64_t top_k;          /* sampling: the k most likely tokens only; 0: all */
  double top_p;           /* sampling: the smallest set reaching this probability; 0: 1 */
  double temperature;     /* > 0: sampling at this temperature; 0: greedy or beams */
  double length_penalty;  /* beams: scores sum(log p) / length^penalty (0: plain sum) */
  uint64_t seed;          /* sampling: the Philox stream's seed */
  int32_t vocab_limit;    /* choose ids below it only (e.g. the tokenizer's size); 0: all */
  int32_t dropless;       /* 1: no token dropped by expert capacity while generating */
  int32_t early_stopping; /* beams: stop once num_beams hypotheses are finished */
  int32_t reserved2;      /* zero */
  int64_t min_new_tokens; /* eos cannot end a row before this many new tokens */
  /* NULL, or a flag checked before every decoding step: once sw_cancel_request has been
   * called on it (from any thread), the call returns SW_ERR_CANCELLED within one step and
   * leaves out_ids and lengths unchanged. */
  sw_cancel* cancel;
} sw_generate_options;

/* Generates for each sequence of inputs (input_ids and attention_mask used) with the
 * decoder's key/value cache: out_ids is [batch, max_new_tokens], each row's tokens then 0
 * (pad); lengths [batch] gets each row's count (eos ends a row and is not included). Eval
 * mode; CPU models. */
SW_API sw_status sw_model_generate(sw_model* model, const sw_batch* inputs,
                                   const sw_generate_options* options, int32_t* out_ids,
                                   size_t out_len, int64_t* lengths, size_t lengths_len);

/* The same batch through the CPU f32 reference and device ("cuda:0") in dtype ("f32" or
 * "bf16") with this model's parameters: per-block max and mean relative differences of
 * the outputs and routing agreement, as a table in report. *within_tolerance is 1 when
 * every block is within tolerance (<= 0: 1e-4 for f32, 2e-2 for bf16) and every token is
 * routed alike. The comparison runs again for each call: give a report buffer of a few KiB
 * rather than asking for the size first. */
SW_API sw_status sw_model_validate(const sw_model* model, const sw_batch* batch, const char* device,
                                   const char* dtype, double tolerance, char* report, size_t cap,
                                   size_t* needed, int* within_tolerance);

/* ---------------------------------------------------------------- planning */

/* How a model trains on a cluster, before a run (`switch plan`): request_text is a
 * PlanRequest in protobuf text (core/proto/libswitch.proto: model_preset or model, gpus,
 * gpu or rates, batch_size, input_length, target_length, micro_batches, dtype, optimizer,
 * recompute, load_imbalance, rank_ordered_reduction, layout; "" for every default). For
 * every dp x ep x mp layout of the GPUs: memory per GPU, bytes sent per step by
 * collective and an estimated step time, the layouts that fit fastest first, the others
 * with why_not. format "proto": the Plan message in protobuf text; "table": the table
 * `switch plan` prints. A field that makes no sense is SW_ERR_INVALID_ARGUMENT naming it;
 * an unknown preset or GPU SW_ERR_NOT_FOUND listing the known ones. */
SW_API sw_status sw_plan(const char* request_text, const char* format, char* buf, size_t cap,
                         size_t* needed);

/* ---------------------------------------------------------------- distributed */

/* The ranks of a launch (mpirun, srun) that train together. */
typedef struct sw_communicator sw_communicator;

/* The world of the launch: MPI's when the process was started by an MPI launcher (its
 * environment names a rank; MPI is initialised here), else a single rank. A launch under
 * MPI in a build without it is SW_ERR_UNSUPPORTED. */
SW_API sw_status sw_communicator_from_env(sw_communicator** out);
SW_API sw_status sw_communicator_rank(const sw_communicator* comm, int* out);
SW_API sw_status sw_communicator_size(const sw_communicator* comm, int* out);
/* Ends every rank with this exit code (after an error on one rank, so that the others do
 * not wait forever). Does not return. */
SW_API void sw_communicator_abort(sw_communicator* comm, int code);
SW_API void sw_communicator_destroy(sw_communicator* comm);

/* Makes the trainer one data-parallel replica among the communicator's ranks (all ranks
 * call it with the same config, model seed and order of calls): each step's gradients,
 * losses and routing counts are summed over the replicas in rank order, so every
 * replica takes the single-process step on the global batch, bit for bit. sw_trainer_step
 * with a caller batch takes this rank's shard; with NULL, every rank draws the global
 * built-in batch and steps on its shard (batch_size must split over the ranks and
 * micro_batches). The trainer keeps the communicator alive. Before the first step only;
 * sw_trainer_save then writes from rank 0 only. */
SW_API sw_status sw_trainer_set_data_parallel(sw_trainer* trainer, sw_communicator* comm);

/* A communicator over an MPI communicator of the caller's: mpi_comm points to an MPI_Comm
 * of the MPI libswitch was built with (&comm in C; MPI._addressof(comm) from mpi4py). It
 * is duplicated, so the caller may free its own. The caller initialises MPI. Collective
 * over its ranks. SW_ERR_UNSUPPORTED in a build without MPI. */
SW_API sw_status sw_communicator_from_mpi(const void* mpi_comm, sw_communicator** out);
/* The ranks of comm that pass the same color (>= 0), ordered by key (collective over
 * comm): an explicit subset of the ranks, e.g. two jobs in one launch. */
SW_API sw_status sw_communicator_split(const sw_communicator* comm, int color, int key,
                                       sw_communicator** out);

/* Lays the trainer out over comm's ranks (collective; every rank calls it with the same
 * config, model and layout, before the first step): layout is "dp=N" (as
 * sw_trainer_set_data_parallel), "dp=N,ep=M" (each group of M consecutive ranks splits
 * every sparse layer's experts and exchanges tokens), "dp=N,mp=M" (each group of M
 * consecutive ranks splits the attention heads and d_ff) or both, "dp=N,ep=M,mp=K" (M
 * groups of K consecutive ranks split the experts, each group its experts' d_ff and the
 * heads); without dp, dp is what ep and mp leave of the ranks. With ep or mp the trainer trains its
 * own copy of the model split over the ranks, each holding its share (the model handle given to
 * sw_trainer_create keeps the whole model as it was, and sw_trainer_model is refused); a restored
 * trainer carries its optimizer state into the shares. Caller batches: each rank passes its
 * replica's shard (the ranks of an mp group pass the same batch; under ep every rank is a
 * replica). sw_trainer_step, sw_trainer_evaluate and sw_trainer_save are collective;
 * sw_trainer_save writes the whole model from rank 0 (experts from their owners), so a
 * checkpoint continues at any layout or in one process. A model on a GPU trains there on
 * every rank (each rank's model on its own GPU): device tensors move over NCCL, or with the
 * train config's device_transport: STAGED through host memory over MPI, which lets ranks
 * share a GPU; two ranks of one host on one GPU under NCCL are SW_ERR_INVALID_ARGUMENT
 * naming them. Several GPUs: written, not yet run on one. */
SW_API sw_status sw_trainer_set_parallel(sw_trainer* trainer, sw_communicator* comm,
                                         const char* layout);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LIBSWITCH_H_ */
