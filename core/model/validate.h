// Validation for users: the same batch through the CPU reference and another device,
// compared block by block. Used by `switch validate` (and the C API's sw_model_validate).
#pragma once

#include <string>
#include <vector>

#include "core/model/switch_transformer.h"

namespace sw {

struct ValidationOptions {
  Device device = Device::cuda(0);
  DType dtype = DType::f32;            // of the model on `device`; the reference is cpu f32
  double tolerance = 1e-4;             // largest allowed max relative difference of any block
  double min_routing_agreement = 1.0;  // fraction of tokens routed alike, per sparse layer
};

struct ValidationReport {
  struct Difference {
    std::string what;            // "encoder block 3", "logits", "loss"
    double max_relative = 0.0;   // max |x - ref| / max |ref|
    double mean_relative = 0.0;  // mean |x - ref| / mean |ref|
  };
  struct Agreement {
    std::string layer;  // "decoder block 1"
    double fraction = 0.0;
  };
  std::vector<Difference> differences;
  std::vector<Agreement> routing;
  bool within_tolerance = false;
  std::string text(const ValidationOptions& options) const;  // a table for people
};

// Builds the model twice from (config, seed) — cpu f32 and options.device in
// options.dtype, identical parameters — runs `batch` through both in eval mode and
// compares every block's output, the logits, the losses and the routing decisions.
ValidationReport validate_devices(const ModelConfig& config, uint64_t seed, const Batch& batch,
                                  const ValidationOptions& options);
// The same for a model's own parameters (trained or loaded), on whatever device it lives.
ValidationReport validate_devices(const SwitchTransformer& model, const Batch& batch,
                                  const ValidationOptions& options);

}  // namespace sw
