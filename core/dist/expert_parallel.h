// Expert parallelism (paper §5, docs/MATH.md §6): a Switch layer's E experts are split over an
// expert-parallel group of n ranks, E / n consecutive experts each (rank r holds experts
// [r E/n, (r+1) E/n)). Every rank routes its own tokens and keeps them per its own
// capacity groups (the paper's semantics: capacity per local group); its dispatched rows,
// laid out expert by expert, go to the experts' owners in one all_to_all_v, the owners
// run their experts on every rank's rows, and a second all_to_all_v brings the outputs
// back in the sender's layout, where they are combined with the gates as usual.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/dist/communicator.h"
#include "core/tensor/tensor.h"

namespace sw {

// Which experts a rank of an expert-parallel group holds.
struct ExpertShard {
  int64_t first = 0;  // global index of the first local expert
  int64_t count = 0;  // local experts
};
// E experts over the group; an error unless the group's size divides E.
ExpertShard expert_shard(int64_t num_experts, int group_rank, int group_size);
// Whether a parameter is an expert's (sharded under expert parallelism), by its HF name.
bool is_expert_parameter(const std::string& name);

// The plan of one layer's exchange, from this rank's kept tokens per (global) expert.
struct ExpertExchange {
  std::vector<int64_t> send_rows;  // per peer: this rank's rows for the peer's experts
  std::vector<int64_t> recv_rows;  // per peer: the peer's rows for this rank's experts
  // The received rows regrouped expert by expert (each local expert's rows from rank 0,
  // then rank 1, ...): received row i goes to row order[i]; local expert j owns rows
  // [local_offset[j], local_offset[j + 1]).
  std::vector<int64_t> order;
  std::vector<int64_t> local_offset;
};
// Collective over the group: exchanges the per-expert counts.
ExpertExchange plan_expert_exchange(Communicator& group,
                                    const std::vector<int64_t>& kept_per_expert);

// The subset of a whole model's saved tensors a rank holds (the names in `wanted`), after
// checking that every expert family is complete: each index 0..E-1 present exactly once.
std::vector<std::pair<std::string, Tensor>> select_tensors(
    const std::vector<std::pair<std::string, Tensor>>& saved,
    const std::vector<std::string>& wanted, int64_t num_experts, const std::string& what);

// Rows in this rank's layout [kept, ...] -> the owners, regrouped by local expert.
Tensor send_to_experts(Communicator& group, const ExpertExchange& plan, const Tensor& rows);
// The inverse: rows regrouped at the owners -> back to each sender's layout.
Tensor return_from_experts(Communicator& group, const ExpertExchange& plan,
                           const Tensor& regrouped);

}  // namespace sw
