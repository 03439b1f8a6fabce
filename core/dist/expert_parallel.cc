#include "core/dist/expert_parallel.h"

#include <cstring>

#include "core/tensor/error.h"

namespace sw {
namespace {

// Rows of `in` moved to rows order[i] of a new tensor (or gathered back from them).
Tensor permute_rows(const Tensor& in, const std::vector<int64_t>& order, bool inverse) {
  SW_CHECK(static_cast<int64_t>(order.size()) == in.dim(0), Status::kInternal,
           "expert exchange: ", order.size(), " positions for ", in.dim(0), " rows");
  Tensor out = Tensor::empty(in.shape(), in.dtype());
  const size_t row_bytes = in.dim(0) ? in.nbytes() / static_cast<size_t>(in.dim(0)) : 0;
  const char* src = static_cast<const char*>(in.raw());
  char* dst = static_cast<char*>(out.raw());
  for (size_t i = 0; i < order.size(); ++i) {
    const size_t to = static_cast<size_t>(order[i]);
    if (inverse)
      std::memcpy(dst + i * row_bytes, src + to * row_bytes, row_bytes);
    else
      std::memcpy(dst + to * row_bytes, src + i * row_bytes, row_bytes);
  }
  return out;
}

}  // namespace

ExpertShard expert_shard(int64_t num_experts, int group_rank, int group_size) {
  SW_CHECK_ARG(group_size >= 1 && num_experts % group_size == 0,
               "expert parallelism: ", num_experts, " experts do not split over ", group_size,
               " ranks");
  const int64_t count = num_experts / group_size;
  return {group_rank * count, count};
}

bool is_expert_parameter(const std::string& name) {
  return name.find(".mlp.experts.expert_") != std::string::npos;
}

ExpertExchange plan_expert_exchange(Communicator& group,
                                    const std::vector<int64_t>& kept_per_expert) {
  const int n = group.size();
  const int64_t experts = static_cast<int64_t>(kept_per_expert.size());
  const ExpertShard mine = expert_shard(experts, group.rank(), n);
  ExpertExchange plan;
  plan.send_rows.assign(n, 0);
  for (int64_t e = 0; e < experts; ++e) plan.send_rows[e / mine.count] += kept_per_expert[e];
  // counts[s * local + j]: rank s's kept tokens for this rank's local expert j.
  const std::vector<int64_t> per_peer(n, mine.count);
  const Tensor counts = group.all_to_all_v(
      Tensor::from_vector<int64_t>(kept_per_expert, {experts, 1}), per_peer, per_peer);
  const int64_t* c = counts.data<int64_t>();
  plan.recv_rows.assign(n, 0);
  plan.local_offset.assign(mine.count + 1, 0);
  for (int s = 0; s < n; ++s)
    for (int64_t j = 0; j < mine.count; ++j) {
      plan.recv_rows[s] += c[s * mine.count + j];
      plan.local_offset[j + 1] += c[s * mine.count + j];
    }
  for (int64_t j = 0; j < mine.count; ++j) plan.local_offset[j + 1] += plan.local_offset[j];
  // Received rows come source by source, each source's expert by expert.
  std::vector<int64_t> next(plan.local_offset.begin(), plan.local_offset.end() - 1);
  for (int s = 0; s < n; ++s)
    for (int64_t j = 0; j < mine.count; ++j)
      for (int64_t k = 0; k < c[s * mine.count + j]; ++k) plan.order.push_back(next[j]++);
  return plan;
}

Tensor send_to_experts(Communicator& group, const ExpertExchange& plan, const Tensor& rows) {
  return permute_rows(group.all_to_all_v(rows, plan.send_rows, plan.recv_rows), plan.order, false);
}

Tensor return_from_experts(Communicator& group, const ExpertExchange& plan,
                           const Tensor& regrouped) {
  return group.all_to_all_v(permute_rows(regrouped, plan.order, true), plan.recv_rows,
                            plan.send_rows);
}

}  // namespace sw
