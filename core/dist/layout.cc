#include "core/dist/layout.h"

#include <cstdlib>
#include <sstream>

#include "core/tensor/error.h"

namespace sw {

ParallelLayout parse_parallel_layout(const std::string& spec, int world_size) {
  const std::string where = "parallel layout \"" + spec + "\": ";
  ParallelLayout layout;
  bool dp_given = false;
  std::istringstream in(spec);
  for (std::string item; std::getline(in, item, ',');) {
    const size_t eq = item.find('=');
    SW_CHECK_ARG(eq != std::string::npos, where, "\"", item,
                 "\" is not KEY=N with KEY dp, ep or mp");
    const std::string key = item.substr(0, eq), digits = item.substr(eq + 1);
    SW_CHECK_ARG(key == "dp" || key == "ep" || key == "mp", where, "unknown degree \"", key,
                 "\" (dp, ep or mp)");
    char* end = nullptr;
    const long long value = std::strtoll(digits.c_str(), &end, 10);
    SW_CHECK_ARG(*end == '\0' && value >= 1, where, key, " must be a positive integer, got \"",
                 digits, "\"");
    // Also keeps dp x ep x mp far from overflowing.
    SW_CHECK_ARG(value <= world_size, where, key, "=", digits, " is more than the ", world_size,
                 " ranks of the launch");
    (key == "dp" ? layout.dp : key == "ep" ? layout.ep : layout.mp) = value;
    dp_given |= key == "dp";
  }
  if (!dp_given) layout.dp = world_size / (layout.ep * layout.mp);
  const int64_t ranks = layout.dp * layout.ep * layout.mp;
  if (dp_given) {
    SW_CHECK_ARG(ranks == world_size, where, "dp x ep x mp is ", ranks, " ranks, the launch has ",
                 world_size);
  } else {
    SW_CHECK_ARG(ranks == world_size, where, "ep x mp = ", layout.ep * layout.mp,
                 " does not divide the launch's ", world_size, " ranks");
  }
  return layout;
}

ParallelCommunicators::ParallelCommunicators(Communicator& world, const ParallelLayout& layout) {
  SW_CHECK_ARG(layout.dp * layout.ep * layout.mp == world.size(), "parallel layout dp=", layout.dp,
               ",ep=", layout.ep, ",mp=", layout.mp, " does not cover the world's ", world.size(),
               " ranks");
  if (world.size() == 1) return;
  groups_.data_parallel = &world;
  const int rank = world.rank(), ep = static_cast<int>(layout.ep), mp = static_cast<int>(layout.mp);
  // Rank r = (g * mp) + m: the mp ranks of model group g share a batch shard; model group
  // g = d * ep + e holds experts shard e of replica d. Ranks of one expert group share m
  // and d (with mp = 1: the ep consecutive ranks [r / ep * ep, +ep)).
  if (ep > 1) {
    const int g = rank / mp, m = rank % mp;
    expert_group_ = world.split((g / ep) * mp + m, g % ep);
    groups_.expert_parallel = expert_group_.get();
  }
  if (mp > 1) {
    model_group_ = world.split(rank / mp, rank % mp);
    replicas_ = world.split(rank % mp, rank / mp);
    groups_.model_parallel = model_group_.get();
    groups_.data_parallel = replicas_.get();
  }
}

}  // namespace sw
