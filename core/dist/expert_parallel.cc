#include "core/dist/expert_parallel.h"

#include <cctype>
#include <cstring>
#include <map>
#include <set>

#include "core/ops/embedding.h"
#include "core/tensor/error.h"

namespace sw {
namespace {

// Rows of `in` moved to rows order[i] of a new tensor (or gathered back from them). A
// device tensor's rows move on the device, gathered by ops::embedding.
Tensor permute_rows(const Tensor& in, const std::vector<int64_t>& order, bool inverse) {
  SW_CHECK(static_cast<int64_t>(order.size()) == in.dim(0), Status::kInternal,
           "expert exchange: ", order.size(), " positions for ", in.dim(0), " rows");
  if (!in.device().is_cpu() && in.dim(0) > 0) {
    // Row i of the result is row source[i] of `in`.
    std::vector<int32_t> source(order.size());
    for (size_t i = 0; i < order.size(); ++i) {
      if (inverse)
        source[i] = static_cast<int32_t>(order[i]);
      else
        source[static_cast<size_t>(order[i])] = static_cast<int32_t>(i);
    }
    const Tensor ids =
        Tensor::from_vector<int32_t>(source, {static_cast<int64_t>(source.size())}).to(in.device());
    return ops::embedding(in.view({in.dim(0), in.numel() / in.dim(0)}), ids).view(in.shape());
  }
  Tensor out = Tensor::empty(in.shape(), in.dtype(), in.device());
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

namespace {

// "…experts.expert_12.wo.weight…" -> ("…experts.expert_{}.wo.weight…", 12); -1 for others.
std::pair<std::string, int64_t> expert_family(const std::string& name) {
  static const std::string kMarker = ".mlp.experts.expert_";
  const size_t at = name.find(kMarker);
  if (at == std::string::npos) return {name, -1};
  const size_t digits = at + kMarker.size();
  size_t end = digits;
  while (end < name.size() && std::isdigit(static_cast<unsigned char>(name[end]))) ++end;
  return {name.substr(0, digits) + "{}" + name.substr(end),
          std::stoll(name.substr(digits, end - digits))};
}

std::string expert_name(const std::string& family, int64_t index) {
  const size_t at = family.find("{}");
  return family.substr(0, at) + std::to_string(index) + family.substr(at + 2);
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> select_tensors(
    const std::vector<std::pair<std::string, Tensor>>& saved,
    const std::vector<std::string>& wanted, int64_t num_experts, const std::string& what) {
  std::map<std::string, std::vector<int>> seen;  // family -> times each index appears
  for (const auto& [name, tensor] : saved) {
    const auto [family, index] = expert_family(name);
    if (index < 0) continue;
    std::vector<int>& count = seen[family];
    if (count.empty()) count.assign(static_cast<size_t>(num_experts), 0);
    SW_CHECK(index < num_experts, Status::kCorrupt, what, " ", name, ": expert ", index,
             " of a model of ", num_experts, " experts");
    ++count[static_cast<size_t>(index)];
  }
  for (const auto& [family, count] : seen)
    for (int64_t e = 0; e < num_experts; ++e)
      SW_CHECK(count[static_cast<size_t>(e)] == 1, Status::kCorrupt, what, " ",
               expert_name(family, e), " appears ", count[static_cast<size_t>(e)],
               " times (expected once)");
  const std::set<std::string> keep(wanted.begin(), wanted.end());
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& entry : saved)
    if (keep.count(entry.first)) out.push_back(entry);
  return out;
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
