#include "core/train/model_shares.h"

#include <set>

#include "core/dist/expert_parallel.h"
#include "core/dist/model_parallel.h"
#include "core/train/optimizer.h"

namespace sw {

ModelShares::ModelShares(const SwitchTransformer& model, const ParallelGroups& groups)
    : model_(model),
      groups_(groups),
      writer_((!groups.data_parallel || groups.data_parallel->rank() == 0) &&
              (!groups.model_parallel || groups.model_parallel->rank() == 0)) {
  if (groups.expert_parallel && groups.expert_parallel->size() > 1)
    expert_writers_ =
        groups.data_parallel->split(groups.expert_parallel->rank(), groups.data_parallel->rank());
}

ModelShares::Named ModelShares::parameters_from(const Named& whole) const {
  std::vector<std::string> mine;
  for (const auto& e : model_.parameters().entries()) mine.push_back(e.name);
  return own_parts(select_tensors(whole, mine, model_.config().num_experts(), "parameter"));
}

ModelShares::Named ModelShares::state_from(const Named& whole) const {
  std::set<std::string> held;
  for (const auto& e : model_.parameters().entries()) held.insert(e.name);
  std::vector<std::string> mine;
  for (const auto& s : whole)
    if (held.count(s.first.substr(0, s.first.rfind('/'))))  // "<parameter>/<slot>"
      mine.push_back(s.first);
  return own_parts(select_tensors(whole, mine, model_.config().num_experts(), "optimizer state"));
}

int ModelShares::split_axis(const std::string& name) const {
  // A parameter's own split, or for "<parameter>/<slot>" its optimizer state's.
  const size_t slash = name.rfind('/');
  const std::string parameter = slash == std::string::npos ? name : name.substr(0, slash);
  for (const auto& e : model_.parameters().entries())
    if (e.name == parameter) {
      if (e.split.whole() || slash == std::string::npos) return e.split.whole() ? -1 : e.split.axis;
      return state_split_axis(name.substr(slash + 1), e.tensor.ndim(), e.split.axis);
    }
  return -1;
}

ModelShares::Named ModelShares::own_parts(Named whole) const {
  Communicator* mp = groups_.model_parallel;
  if (!mp || mp->size() == 1) return whole;
  for (auto& [name, t] : whole) {
    const int axis = split_axis(name);
    if (axis >= 0) t = take_part(t, {axis, mp->size(), mp->rank()});
  }
  return whole;
}

std::string ModelShares::save(Checkpoint c, Named parameters, Named state, const std::string& root,
                              const SaveOptions& options) const {
  Communicator* mp = groups_.model_parallel;
  if (mp && mp->size() > 1) {  // the whole tensors, from every part
    const auto axis_of = [this](const std::string& name) { return split_axis(name); };
    parameters = gather_model_parallel(*mp, parameters, axis_of);
    state = gather_model_parallel(*mp, state, axis_of);
    // With experts split too, the first part's ranks write: every model group now holds
    // its experts' whole tensors, and their replicas save together below.
    if (expert_writers_ && mp->rank() != 0) return "";
  }
  // Expert parallelism: each expert is written by the first replica holding it, in
  // parallel, the rest by rank 0. Otherwise rank 0 holds (or has gathered) everything.
  const bool experts_here = expert_writers_ && expert_writers_->rank() == 0;
  if (!writer_ && !experts_here) parameters.clear(), state.clear();
  if (expert_writers_) {
    auto keep_mine = [&](Named& tensors) {
      Named mine;
      for (auto& t : tensors)
        if (is_expert_parameter(t.first) ? experts_here : writer_) mine.push_back(std::move(t));
      tensors = std::move(mine);
    };
    keep_mine(parameters);
    keep_mine(state);
  }
  c.parameters = std::move(parameters);
  c.optimizer_state = std::move(state);
  if (expert_writers_) {
    const std::string dir = save_checkpoint(*groups_.data_parallel, root, c, options);
    return writer_ ? dir : "";
  }
  return writer_ ? save_checkpoint(root, c, options) : "";
}

}  // namespace sw
