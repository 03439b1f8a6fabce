#include "core/model/validate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

namespace sw {
namespace {

ValidationReport::Difference compare(const std::string& what, const Tensor& value,
                                     const Tensor& reference) {
  const Tensor x = value.to(Device::cpu()).to(DType::f64),
               ref = reference.to(Device::cpu()).to(DType::f64);
  SW_CHECK(x.shape() == ref.shape(), Status::kInternal, "validate: ", what, " has shape ",
           shape_str(x.shape()), " against ", shape_str(ref.shape()));
  double max_diff = 0, max_ref = 0, sum_diff = 0, sum_ref = 0;
  const double* px = x.data<double>();
  const double* pr = ref.data<double>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double d = std::isnan(px[i]) ? INFINITY : std::fabs(px[i] - pr[i]);
    max_diff = std::max(max_diff, d);
    max_ref = std::max(max_ref, std::fabs(pr[i]));
    sum_diff += d;
    sum_ref += std::fabs(pr[i]);
  }
  return {what, max_ref > 0 ? max_diff / max_ref : max_diff,
          sum_ref > 0 ? sum_diff / sum_ref : sum_diff};
}

std::string block_name(Stack stack, int64_t block) {
  return std::string(stack_name(stack)) + " block " + std::to_string(block);
}

}  // namespace

ValidationReport validate_devices(const ModelConfig& config, uint64_t seed, const Batch& batch,
                                  const ValidationOptions& options) {
  return validate_devices(SwitchTransformer(config, seed, DType::f32, Device::cpu()), batch,
                          options);
}

ValidationReport validate_devices(const SwitchTransformer& model, const Batch& batch,
                                  const ValidationOptions& options) {
  SW_CHECK_ARG(!options.device.is_cpu(), "validate: the device to validate must not be the cpu");
  SW_CHECK_ARG(options.tolerance > 0, "validate: tolerance must be > 0, got ", options.tolerance);
  // Both sides get the model's parameters, whatever its own device and dtype.
  const bool model_is_reference = model.device().is_cpu() && model.dtype() == DType::f32;
  std::unique_ptr<SwitchTransformer> own_reference;
  if (!model_is_reference)
    own_reference = std::make_unique<SwitchTransformer>(model.copy_to(Device::cpu(), DType::f32));
  const SwitchTransformer& reference = model_is_reference ? model : *own_reference;
  const SwitchTransformer candidate = model.copy_to(options.device, options.dtype);
  ForwardOptions run;
  run.keep_block_outputs = true;
  const ForwardOutput ref = reference.forward(batch, run);
  const ForwardOutput out = candidate.forward(batch, run);

  ValidationReport report;
  for (size_t i = 0; i < ref.block_outputs.size(); ++i)
    report.differences.push_back(
        compare(block_name(ref.block_outputs[i].stack, ref.block_outputs[i].block),
                out.block_outputs[i].hidden, ref.block_outputs[i].hidden));
  report.differences.push_back(compare("logits", out.logits, ref.logits));
  report.differences.push_back(compare("loss", Tensor::full({1}, DType::f64, out.loss),
                                       Tensor::full({1}, DType::f64, ref.loss)));
  for (size_t i = 0; i < ref.routing.size(); ++i) {
    const Tensor a = out.routing[i].expert_index.to(Device::cpu()), b = ref.routing[i].expert_index;
    int64_t same = 0;
    for (int64_t t = 0; t < b.numel(); ++t) same += a.data<int32_t>()[t] == b.data<int32_t>()[t];
    report.routing.push_back({block_name(ref.routing[i].stack, ref.routing[i].block),
                              b.numel() ? static_cast<double>(same) / b.numel() : 1.0});
  }
  report.within_tolerance = true;
  for (const auto& d : report.differences)
    report.within_tolerance &= d.max_relative <= options.tolerance;
  for (const auto& r : report.routing)
    report.within_tolerance &= r.fraction >= options.min_routing_agreement;
  return report;
}

std::string ValidationReport::text(const ValidationOptions& options) const {
  std::string s;
  char line[256];
  std::snprintf(line, sizeof line, "%-20s %14s %14s\n", "compared with cpu f32", "max rel",
                "mean rel");
  s += line;
  for (const auto& d : differences) {
    std::snprintf(line, sizeof line, "%-20s %14.3e %14.3e%s\n", d.what.c_str(), d.max_relative,
                  d.mean_relative,
                  d.max_relative > options.tolerance ? "  <- above tolerance" : "");
    s += line;
  }
  for (const auto& r : routing) {
    std::snprintf(line, sizeof line, "routing %-18s %6.2f%% of tokens to the same expert%s\n",
                  r.layer.c_str(), 100.0 * r.fraction,
                  r.fraction < options.min_routing_agreement ? "  <- below the minimum" : "");
    s += line;
  }
  std::snprintf(line, sizeof line, "%s (tolerance %.1e, routing agreement >= %.2f%%)\n",
                within_tolerance ? "WITHIN TOLERANCE" : "OUTSIDE TOLERANCE", options.tolerance,
                100.0 * options.min_routing_agreement);
  s += line;
  return s;
}

}  // namespace sw
