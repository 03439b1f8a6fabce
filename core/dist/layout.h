// How a launch's ranks are laid out for training: dp data-parallel replicas, ep ranks
// splitting every sparse layer's experts, mp consecutive ranks splitting the attention
// heads and d_ff (each expert's too) ("dp=2,ep=2", "dp=2,mp=2", "ep=2,mp=2"), and the
// communicators a layout splits the world into.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/dist/communicator.h"

namespace sw {

struct ParallelLayout {
  int64_t dp = 1, ep = 1, mp = 1;
};

// "dp=N[,ep=M][,mp=K]" over world_size ranks; without dp, dp is what ep and mp leave of
// the ranks. dp x ep x mp must be world_size; a mismatch is a kInvalidArgument naming the
// problem.
ParallelLayout parse_parallel_layout(const std::string& spec, int world_size);

// The communicators of a distributed run (none: a single process).
struct ParallelGroups {
  // The replicas the global batch is split over: every rank, or under model parallelism
  // the ranks holding the same part of the model.
  Communicator* data_parallel = nullptr;
  Communicator* expert_parallel = nullptr;  // the ranks this one's experts are split over
  Communicator* model_parallel = nullptr;   // the ranks this one's heads and d_ff are split over
};

// The groups of a layout over the world, split from it (collective: every rank constructs
// one with the same layout). Rank r's model group is the mp ranks [r / mp * mp, +mp), its
// replicas (the batch shards) the ranks r % mp, r % mp + mp, ...; with g = r / mp, its
// expert group the ep ranks of the same r % mp whose g lies in [g / ep * ep, +ep) (with
// mp = 1: the ep ranks [r / ep * ep, +ep)). A world of one rank has no groups.
class ParallelCommunicators {
 public:
  ParallelCommunicators(Communicator& world, const ParallelLayout& layout);

  // Borrowed from this object (and the world), valid while both live.
  const ParallelGroups& groups() const { return groups_; }

 private:
  std::unique_ptr<Communicator> expert_group_, model_group_, replicas_;
  ParallelGroups groups_;
};

}  // namespace sw
