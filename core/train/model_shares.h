// A model split over a parallel layout's groups, and its whole-model checkpoints: a rank
// takes its share of whole tensors (its experts under expert parallelism, its part of
// every split tensor under model parallelism), and a save gathers the shares so that
// every checkpoint holds the whole model and continues at any layout. Used by
// `switch train --parallel` (PretrainingRun) and the C ABI's sw_trainer_set_parallel.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dist/layout.h"
#include "core/io/checkpoint.h"
#include "core/model/switch_transformer.h"

namespace sw {

class ModelShares {
 public:
  using Named = std::vector<std::pair<std::string, Tensor>>;

  // `model` holds this rank's share under `groups` (both borrowed; they must outlive this
  // object). Collective over groups.data_parallel when experts are split (the ranks
  // holding the same experts are grouped to write them).
  ModelShares(const SwitchTransformer& model, const ParallelGroups& groups);

  // This rank's share of a whole model's tensors: its parameters, or the optimizer state
  // of its parameters ("<parameter>/<slot>"; the state of parameters held elsewhere is
  // left out). Every expert family must be complete in `whole`.
  Named parameters_from(const Named& whole) const;
  Named state_from(const Named& whole) const;

  // Saves `c` with the whole model (collective over every rank of the layout): the
  // model-parallel parts are gathered, each expert is written by the first replica holding
  // it and the rest by rank 0. `parameters` and `state` are this rank's (the model's and
  // its optimizer's). Returns the step directory on the writing rank, "" elsewhere.
  std::string save(Checkpoint c, Named parameters, Named state, const std::string& root,
                   const SaveOptions& options) const;

  // Rank 0 of the run: it writes the run's files (and whatever no other rank writes).
  bool writer() const { return writer_; }

 private:
  // The axis a parameter or optimizer state tensor is split along here (-1: whole).
  int split_axis(const std::string& name) const;
  Named own_parts(Named whole) const;

  const SwitchTransformer& model_;
  ParallelGroups groups_;
  std::unique_ptr<Communicator> expert_writers_;  // the ranks holding this rank's experts
  bool writer_ = true;
};

}  // namespace sw
