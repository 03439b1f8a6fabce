// The rates `switch plan` estimates a step with (ClusterRates in libswitch.proto): built in
// for a few GPUs, each figure marked measured (docs/PERF.md) or datasheet, or read from a
// file of the user's own measurements.
#pragma once

#include <string>
#include <vector>

#include "core/proto/libswitch.pb.h"

namespace sw {

using ClusterRates = proto::ClusterRates;

// "h200", "h100", "a100"; another name is a not-found error listing these.
ClusterRates cluster_rates(const std::string& gpu);
std::vector<std::string> cluster_rate_names();

// Rates from protobuf text, checked: every rate and the memory > 0, the achieved fraction
// in (0, 1], gpus_per_node >= 1; an error names the field.
ClusterRates cluster_rates_from_text(const std::string& text);
void validate(const ClusterRates& rates);

}  // namespace sw
