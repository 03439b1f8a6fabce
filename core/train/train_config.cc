#include "core/train/train_config.h"

#include <cmath>

#include "core/tensor/error.h"

namespace sw {

TrainConfig train_config_from_text(const std::string& text) {
  TrainConfig config;
  parse_text(text, config, "train config");
  validate(config);
  return config;
}

std::string train_config_to_text(const TrainConfig& config) { return text_with_defaults(config); }

void apply_override(TrainConfig& config, const std::string& key_equals_value) {
  TrainConfig merged = config;
  merge_override(merged, key_equals_value);
  validate(merged);
  config = merged;
}

namespace {

void require(bool ok, const char* field, const std::string& rule) {
  SW_CHECK_ARG(ok, field, ": ", rule);
}

// T5 pads the vocabulary to a multiple of 128 (docs/MATH.md §1).
int64_t padded_vocab(int64_t tokenizer_vocab_size) {
  return (tokenizer_vocab_size + 127) / 128 * 128;
}

}  // namespace

void validate_precision(const TrainConfig& c) {
  // The router's precision is a choice only where the model computes in bf16.
  if (c.precision() == TrainConfig::F32)
    require(c.model().router_dtype() == ModelConfig::ROUTER_FLOAT32, "model.router_dtype",
            "is ROUTER_BFLOAT16 but precision is F32 (an f32 run computes its router in f32 "
            "like everything else): set precision BF16");
  // A GPU computes its router in f32 always (kernels/router.cu): the ablation is the cpu's.
  if (c.precision() == TrainConfig::BF16 && c.device() != "cpu")
    require(c.model().router_dtype() == ModelConfig::ROUTER_FLOAT32, "model.router_dtype",
            detail::concat("is ROUTER_BFLOAT16 on device ", c.device(),
                           ": the bf16-router ablation trains on the cpu in this version (a "
                           "GPU's router kernels are f32); use ROUTER_FLOAT32 or device cpu"));
}

void validate(const TrainConfig& c) {
  require(c.steps() >= 1, "steps", detail::concat("must be >= 1, got ", c.steps()));
  try {
    Device::parse(c.device());  // whether it is here is checked when the run starts
  } catch (const Error&) {
    require(false, "device",
            detail::concat("expected \"cpu\", \"cuda\" or \"cuda:N\", got \"", c.device(), "\""));
  }
  require(c.distill_teacher_weight() >= 0 && c.distill_teacher_weight() <= 1,
          "distill_teacher_weight",
          detail::concat("must be in [0, 1], got ", c.distill_teacher_weight()));
  // Distillation's settings mean nothing without a teacher: a changed one is not ignored.
  if (c.distill_teacher().empty()) {
    require(c.distill_teacher_weight() == 0.25, "distill_teacher_weight",
            detail::concat("is set to ", c.distill_teacher_weight(),
                           " but distill_teacher is empty (it weighs a teacher's probabilities)"));
    require(c.distill_init_from_teacher(), "distill_init_from_teacher",
            "is false but distill_teacher is empty (it says how a student starts)");
  }
  if (!c.init_from().empty()) {
    require(c.distill_teacher().empty() || !c.distill_init_from_teacher(), "init_from",
            "and distill_init_from_teacher both say how the run starts: set "
            "distill_init_from_teacher: false to start a student from init_from");
  }
  require(c.gradient_bucket_bytes() >= 1, "gradient_bucket_bytes",
          detail::concat("must be >= 1, got ", c.gradient_bucket_bytes()));
  validate_precision(c);
  require(c.max_bad_steps() >= 1, "max_bad_steps",
          detail::concat("must be >= 1, got ", c.max_bad_steps()));
  require(c.batch_size() >= 1, "batch_size", detail::concat("must be >= 1, got ", c.batch_size()));
  require(c.micro_batches() >= 1 && c.batch_size() % c.micro_batches() == 0, "micro_batches",
          detail::concat("must divide batch_size ", c.batch_size(), ", got ", c.micro_batches()));
  require(c.input_length() >= 4 && c.input_length() <= (1 << 20), "input_length",
          detail::concat("must be in [4, 2^20], got ", c.input_length()));
  require(c.target_length() >= 3 && c.target_length() <= (1 << 20), "target_length",
          detail::concat("must be in [3, 2^20], got ", c.target_length()));
  require(std::isfinite(c.learning_rate()) && c.learning_rate() > 0, "learning_rate",
          detail::concat("must be > 0, got ", c.learning_rate()));
  require(c.warmup_steps() >= 0, "warmup_steps",
          detail::concat("must be >= 0, got ", c.warmup_steps()));
  require(std::isfinite(c.grad_clip_norm()) && c.grad_clip_norm() >= 0, "grad_clip_norm",
          detail::concat("must be >= 0, got ", c.grad_clip_norm()));
  require(c.validation_fraction() > 0 && c.validation_fraction() < 1, "validation_fraction",
          detail::concat("must be in (0, 1), got ", c.validation_fraction()));
  require(c.tokenizer_vocab_size() >= 300 && c.tokenizer_vocab_size() <= (1 << 20),
          "tokenizer_vocab_size",
          detail::concat("must be in [300, 2^20] (byte fallback takes 259 ids), got ",
                         c.tokenizer_vocab_size()));
  require(c.tokenizer_character_coverage() > 0 && c.tokenizer_character_coverage() <= 1,
          "tokenizer_character_coverage",
          detail::concat("must be in (0, 1], got ", c.tokenizer_character_coverage()));
  require(c.num_sentinels() >= 1 && c.num_sentinels() <= 10000, "num_sentinels",
          detail::concat("must be in [1, 10000], got ", c.num_sentinels()));
  require(c.noise_density() > 0 && c.noise_density() < 1, "noise_density",
          detail::concat("must be in (0, 1), got ", c.noise_density()));
  require(c.mean_noise_span_length() >= 1, "mean_noise_span_length",
          detail::concat("must be >= 1, got ", c.mean_noise_span_length()));
  require(c.eval_interval() >= 0, "eval_interval",
          detail::concat("must be >= 0, got ", c.eval_interval()));
  require(c.eval_batches() >= 1, "eval_batches",
          detail::concat("must be >= 1, got ", c.eval_batches()));
  require(c.log_interval() >= 1, "log_interval",
          detail::concat("must be >= 1, got ", c.log_interval()));
  require(c.collapse_warning_share() > 0 && c.collapse_warning_share() <= 1,
          "collapse_warning_share",
          detail::concat("must be in (0, 1], got ", c.collapse_warning_share()));
  require(!c.corpus().empty(), "corpus", "must name a file or directory");
  require(c.checkpoint_interval() >= 0, "checkpoint_interval",
          detail::concat("must be >= 0, got ", c.checkpoint_interval()));
  require(c.keep_checkpoints() >= 1, "keep_checkpoints",
          detail::concat("must be >= 1, got ", c.keep_checkpoints()));
  train_options(c).schedule.validate();
  // The model the run will build, as far as it is known before the tokenizer is trained
  // (resolve_model checks the vocabulary against the tokenizer once it exists).
  try {
    ModelConfig model = preset(c.model_preset());
    model.MergeFrom(c.model());
    if (!c.model().has_vocab_size()) model.set_vocab_size(padded_vocab(c.tokenizer_vocab_size()));
    validate(model);
  } catch (const Error& e) {
    throw Error(e.status(), "model (preset \"" + c.model_preset() +
                                "\" with the config's model fields): " + e.what());
  }
}

ModelConfig resolve_model(const TrainConfig& c, int64_t tokenizer_vocab_size) {
  ModelConfig model = preset(c.model_preset());
  model.MergeFrom(c.model());
  const int64_t padded = padded_vocab(tokenizer_vocab_size);
  if (c.model().has_vocab_size()) {
    SW_CHECK_ARG(c.model().vocab_size() >= tokenizer_vocab_size,
                 "model.vocab_size: ", c.model().vocab_size(), " cannot hold the tokenizer's ",
                 tokenizer_vocab_size, " ids");
  } else {
    model.set_vocab_size(padded);
  }
  validate(model);
  return model;
}

DeviceTransport device_transport(const TrainConfig& c) {
  return c.device_transport() == TrainConfig::STAGED ? DeviceTransport::kHostStaged
                                                     : DeviceTransport::kNccl;
}

TrainOptions train_options(const TrainConfig& c) {
  TrainOptions o;
  o.optimizer = c.optimizer() == TrainConfig::ADAMW ? TrainOptions::OptimizerKind::kAdamW
                                                    : TrainOptions::OptimizerKind::kAdafactor;
  o.adafactor.decay_rate = c.adafactor_decay_rate();
  o.adafactor.multiply_by_parameter_scale = c.adafactor_multiply_by_parameter_scale();
  o.adafactor.weight_decay = c.weight_decay();
  o.adamw.beta1 = c.adamw_beta1();
  o.adamw.beta2 = c.adamw_beta2();
  o.adamw.weight_decay = c.weight_decay();
  o.grad_clip_norm = c.grad_clip_norm();
  o.max_bad_steps = c.max_bad_steps();
  o.schedule.base = c.learning_rate();
  o.schedule.warmup_steps = c.warmup_steps();
  o.schedule.min_rate = c.min_learning_rate();
  o.schedule.total_steps = c.steps();
  o.teacher_weight = c.distill_teacher_weight();
  o.bf16 = c.precision() == TrainConfig::BF16;
  o.gradient_reduction = c.gradient_reduction() == TrainConfig::ALL_REDUCE
                             ? Reduction::kAllReduce
                             : Reduction::kRankOrdered;
  o.overlap_reduction = c.overlap_gradient_reduction();
  o.gradient_bucket_bytes = static_cast<size_t>(c.gradient_bucket_bytes());
  o.recompute_activations = c.recompute_activations();
  o.fixed_expert_capacity = c.fixed_expert_capacity();
  switch (c.schedule()) {
    case TrainConfig::INVERSE_SQRT:
      o.schedule.kind = LearningRateSchedule::Kind::kInverseSqrt;
      break;
    case TrainConfig::CONSTANT:
      o.schedule.kind = LearningRateSchedule::Kind::kConstant;
      break;
    case TrainConfig::WARMUP_COSINE:
      o.schedule.kind = LearningRateSchedule::Kind::kWarmupCosine;
      break;
  }
  return o;
}

}  // namespace sw
