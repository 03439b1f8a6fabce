// Compares two checkpoints tensor by tensor, parameters and optimizer state alike:
//   sw_compare_checkpoints A B TOLERANCE
// Exit status 1 when their steps, tensor names or shapes differ, or when a tensor's
// difference exceeds TOLERANCE in norm relative to the tensor's norm in B, ||A - B|| / ||B||
// (the norm, not the largest element: Adafactor's per-element scaling turns float noise in
// a near-zero gradient element into a visible update to that one element).
// Each checkpoint may have been written by any parallel layout: load_checkpoint merges it.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "core/io/checkpoint.h"
#include "core/tensor/error.h"

namespace {

using Named = std::vector<std::pair<std::string, sw::Tensor>>;

// The worst relative difference over the tensors of one set; -1 when the sets disagree.
double worst_difference(const Named& a, const Named& b, const char* set, std::string& worst_name) {
  if (a.size() != b.size()) {
    std::fprintf(stderr, "%s: %zu tensors vs %zu\n", set, a.size(), b.size());
    return -1;
  }
  std::map<std::string, const sw::Tensor*> by_name;
  for (const auto& [name, t] : b) by_name[name] = &t;
  double worst = 0;
  for (const auto& [name, x] : a) {
    const auto found = by_name.find(name);
    if (found == by_name.end() || found->second->shape() != x.shape()) {
      std::fprintf(stderr, "%s: %s is missing from the second checkpoint or has another shape\n",
                   set, name.c_str());
      return -1;
    }
    const sw::Tensor& y = *found->second;
    double norm = 0, diff = 0;
    for (int64_t i = 0; i < x.numel(); ++i) {
      norm += y.item(i) * y.item(i);
      diff += (x.item(i) - y.item(i)) * (x.item(i) - y.item(i));
    }
    const double relative = norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
    if (relative >= worst) worst = relative, worst_name = name;
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s A B TOLERANCE\n", argv[0]);
    return 2;
  }
  try {
    const sw::Checkpoint a = sw::load_checkpoint(argv[1]), b = sw::load_checkpoint(argv[2]);
    const double tolerance = std::atof(argv[3]);
    if (a.step != b.step) {
      std::fprintf(stderr, "steps differ: %lld vs %lld\n", static_cast<long long>(a.step),
                   static_cast<long long>(b.step));
      return 1;
    }
    bool ok = true;
    for (const auto& [set, x, y] : {std::tuple<const char*, const Named*, const Named*>{
                                        "parameters", &a.parameters, &b.parameters},
                                    {"optimizer state", &a.optimizer_state, &b.optimizer_state}}) {
      std::string name;
      const double worst = worst_difference(*x, *y, set, name);
      if (worst >= 0)
        std::printf(
            "%s: %zu tensors, largest relative difference (norm) %.2e in %s (tolerance %g)\n", set,
            x->size(), worst, name.c_str(), tolerance);
      ok = ok && worst >= 0 && worst <= tolerance && !x->empty();
    }
    return ok ? 0 : 1;
  } catch (const sw::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
