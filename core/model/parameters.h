// The model's named parameters, in creation order, named like the HF checkpoints
// (`encoder.block.1.layer.1.mlp.experts.expert_3.wi.weight`).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/dist/model_parallel.h"
#include "core/model/config.h"
#include "core/tensor/tensor.h"

namespace sw {

// How a parameter is initialised (docs/MATH.md §4).
struct InitRule {
  enum class Kind { kOnes, kNormal, kZeros };
  Kind kind = Kind::kNormal;
  int64_t fan_in = 1;       // paper scheme: sigma = sqrt(init_scale / fan_in) * extra_scale
  double extra_scale = 1;   // paper scheme: e.g. 1/sqrt(d_kv) folded into q
  double hf_std = 1.0;      // HF scheme: plain normal with this std
  bool unit_scale = false;  // paper scheme: sigma = 1 (embeddings)
};

class ParameterStore {
 public:
  struct Entry {
    std::string name;
    Tensor tensor;
    InitRule init;
    // Addresses the parameter's init stream: its place among all the model's parameters,
    // including those another rank holds (expert parallelism), so every rank draws the
    // numbers a single process would.
    uint32_t site = 0;
    // Model parallelism: the part of the parameter this rank holds (whole by default).
    Split split;
    // false: a buffer that a rule moves, not the optimizer (the routers' balancing
    // biases); saved and restored like a parameter, given no gradient step.
    bool trainable = true;
  };

  // Registers a parameter (or this rank's part of it); a duplicate name is an internal
  // error.
  Tensor add(const std::string& name, const Tensor& tensor, const InitRule& init,
             const Split& split = {});
  // A buffer (not trainable) starting at zero; it takes no init site, so adding one changes
  // no other parameter's initial values.
  Tensor add_buffer(const std::string& name, const Tensor& tensor);
  // Takes the init site of a parameter another rank holds.
  void skip() { ++next_site_; }

  // The parameter called name; an unknown name is a not-found error.
  const Tensor& get(const std::string& name) const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<std::string> names() const;
  int64_t num_elements() const;
  // Overwrites a parameter from values of the same shape (any float dtype; converted).
  void set(const std::string& name, const Tensor& values);

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t> index_;
  uint32_t next_site_ = 1;
};

// The dtype a parameter's gradient is kept in: its own, but f32 for a bf16 parameter (the
// f32 master gradient of bf16 training, docs/MATH.md §5 Precision).
inline DType gradient_dtype(DType parameter) {
  return parameter == DType::bf16 ? DType::f32 : parameter;
}

// Gradients shaped like the parameters they belong to, zero until first written. Keyed by
// the parameter tensor itself (its data and extent), so a layer can accumulate into the
// stacked [E, ...] expert tensor while by_name() hands out each expert's slice.
class GradientBuffer {
 public:
  // A zero gradient the shape of `parameter`, in gradient_dtype (the same one for the same
  // tensor).
  Tensor& of(const Tensor& parameter);
  // Zeroes every gradient held, keeping its memory: a buffer reused step after step
  // costs one pass of writes, not fresh pages from the OS to fault in and clear.
  void zero();
  // Every parameter's gradient in the store's order (zeros for parameters never reached).
  std::vector<std::pair<std::string, Tensor>> by_name(const ParameterStore& store) const;
  // One parameter's gradient as by_name gives it, kept from now on even where nothing has
  // written it yet (zeros), so that by_name returns this very tensor.
  Tensor at(const Tensor& parameter);

 private:
  // The parameter's part of a gradient kept for a tensor holding it; undefined if none.
  Tensor find(const Tensor& parameter) const;

  struct Key {
    const char* data;
    int64_t numel;
    // The parameter's element size: a part is looked up only in a tensor of its own dtype
    // (a bf16 model holds f32 router weights beside bf16 ones).
    size_t element_bytes;
    bool operator<(const Key& o) const { return data != o.data ? data < o.data : numel < o.numel; }
  };
  std::map<Key, Tensor> grads_;
};

// Fills every parameter from its InitRule under the config's scheme; the numbers come
// from the Philox stream (seed, init, parameter index), so they do not depend on threads.
// A rank holding part of a parameter draws the whole and keeps its part.
void initialize(ParameterStore& store, ModelConfig::InitScheme scheme, double init_scale,
                uint64_t seed);

}  // namespace sw
