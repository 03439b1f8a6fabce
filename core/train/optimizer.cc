#include "core/train/optimizer.h"

#include <map>

namespace sw {

int state_split_axis(const std::string& slot, int ndim, int split_axis) {
  if (split_axis < 0) return -1;
  // "row" drops the last dimension, "col" the one before it ("m", "v": the parameter's).
  if (slot == "row") return split_axis == ndim - 1 ? -1 : split_axis;
  if (slot == "col") {
    if (split_axis == ndim - 2) return -1;
    return split_axis == ndim - 1 ? ndim - 2 : split_axis;
  }
  return split_axis;
}

Tensor& OptimizerBase::Slots::get(const std::string& slot) {
  for (auto& [n, t] : tensors)
    if (n == slot) return t;
  throw Error(Status::kInternal, "optimizer: no slot " + slot + " for " + name);
}

DType OptimizerBase::state_dtype(const Tensor& parameter) {
  return parameter.dtype() == DType::f64 ? DType::f64 : DType::f32;
}

std::vector<std::pair<std::string, Tensor>> OptimizerBase::state() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const Slots& s : slots_)
    for (const auto& [slot, t] : s.tensors) out.push_back({s.name + "/" + slot, t});
  return out;
}

void OptimizerBase::bind(const std::vector<ParameterGradient>& grads) {
  if (slots_.empty()) {
    for (const ParameterGradient& g : grads) slots_.push_back(make_slots(g.name, g.parameter));
    return;
  }
  SW_CHECK_ARG(grads.size() == slots_.size(), "optimizer: ", grads.size(),
               " parameters this step, ", slots_.size(), " on the first");
  for (size_t i = 0; i < grads.size(); ++i)
    SW_CHECK_ARG(grads[i].name == slots_[i].name && grads[i].parameter.shape() == slots_[i].shape,
                 "optimizer: parameter ", i, " is ", grads[i].name, " ",
                 shape_str(grads[i].parameter.shape()), ", was ", slots_[i].name, " ",
                 shape_str(slots_[i].shape));
}

void OptimizerBase::load_state(const std::vector<std::pair<std::string, Tensor>>& parameters,
                               const std::vector<std::pair<std::string, Tensor>>& state) {
  std::map<std::string, const Tensor*> saved;
  for (const auto& [name, t] : state) saved[name] = &t;
  std::vector<Slots> slots;
  for (const auto& [name, parameter] : parameters) {
    Slots s = make_slots(name, parameter);
    for (auto& [slot, tensor] : s.tensors) {
      const std::string key = name + "/" + slot;
      const auto it = saved.find(key);
      SW_CHECK(it != saved.end(), Status::kNotFound, "optimizer state: ", key,
               " is missing from the checkpoint");
      SW_CHECK(it->second->shape() == tensor.shape() && it->second->dtype() == tensor.dtype(),
               Status::kInvalidArgument, "optimizer state: ", key, " is ", it->second->str(),
               " in the checkpoint, ", tensor.str(), " here");
      tensor.copy_from(*it->second);
      saved.erase(it);
    }
    slots.push_back(std::move(s));
  }
  SW_CHECK(saved.empty(), Status::kInvalidArgument, "optimizer state: unexpected ",
           saved.empty() ? std::string() : saved.begin()->first, " in the checkpoint (",
           saved.size(), " unexpected in all)");
  slots_ = std::move(slots);  // only now: a failed load changes nothing
}

}  // namespace sw
