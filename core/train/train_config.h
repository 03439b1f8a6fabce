// TrainConfig (core/proto/libswitch.proto): reading, `key=value` overrides, validation,
// and what it means for the model and the trainer.
#pragma once

#include <string>

#include "core/dist/device_communicator.h"
#include "core/model/config.h"
#include "core/train/trainer.h"

namespace sw {

using TrainConfig = proto::TrainConfig;

// Parsed over the proto defaults and validated; errors name the line and column.
TrainConfig train_config_from_text(const std::string& text);
std::string train_config_to_text(const TrainConfig& config);

// One override such as "steps=200", "optimizer=ADAMW" or "model.num_experts=16": the
// path names fields (nested through messages), the value is in text-format syntax (strings
// need no quotes). An unknown field or a bad value is an error naming the override.
void apply_override(TrainConfig& config, const std::string& key_equals_value);

// Rejects nonsense, naming the field: "batch_size: must be >= 1, got 0".
void validate(const TrainConfig& config);
// The part of validate() about precision and model.router_dtype, for a config whose model
// or device was filled in after it was validated (the C ABI's trainer).
void validate_precision(const TrainConfig& config);

// The model the run trains: the preset, overridden by `model`, with vocab_size set to
// `tokenizer_vocab_size` padded to a multiple of 128 unless `model` sets it (then it must
// hold the tokenizer's ids).
ModelConfig resolve_model(const TrainConfig& config, int64_t tokenizer_vocab_size);

TrainOptions train_options(const TrainConfig& config);

// The config's device_transport as core/dist/device_communicator.h names it.
DeviceTransport device_transport(const TrainConfig& config);

}  // namespace sw
