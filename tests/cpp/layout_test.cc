// Parallel layouts: parsing "dp=N,ep=M,mp=K" specs, and which ranks each group holds.
#include "core/dist/layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/error.h"

namespace {

sw::ParallelLayout parse(const std::string& spec, int world_size) {
  return sw::parse_parallel_layout(spec, world_size);
}

void expect_layout(const sw::ParallelLayout& layout, int64_t dp, int64_t ep, int64_t mp) {
  EXPECT_EQ(layout.dp, dp);
  EXPECT_EQ(layout.ep, ep);
  EXPECT_EQ(layout.mp, mp);
}

TEST(ParallelLayout, ParsesDegreesAndDerivesDpFromTheRest) {
  expect_layout(parse("dp=4", 4), 4, 1, 1);
  expect_layout(parse("dp=2,ep=2", 4), 2, 2, 1);
  expect_layout(parse("ep=2,dp=2", 4), 2, 2, 1);
  expect_layout(parse("dp=2,mp=2", 4), 2, 1, 2);
  expect_layout(parse("ep=4", 4), 1, 4, 1);
  expect_layout(parse("ep=2", 8), 4, 2, 1);
  expect_layout(parse("mp=2", 2), 1, 1, 2);
  expect_layout(parse("dp=1", 1), 1, 1, 1);
  expect_layout(parse("", 3), 3, 1, 1);  // nothing given: every rank a replica
}

// The error for a spec: its status and message.
std::pair<sw::Status, std::string> error_of(const std::string& spec, int world_size) {
  try {
    sw::parse_parallel_layout(spec, world_size);
  } catch (const sw::Error& e) {
    return {e.status(), e.what()};
  }
  return {sw::Status::kOk, ""};
}

TEST(ParallelLayout, RefusesBadSpecsNamingTheProblem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"dp2", "\"dp2\" is not KEY=N"},
      {"dp=2,,ep=2", "\"\" is not KEY=N"},
      {"tp=2", "unknown degree \"tp\""},
      {"dp=x", "dp must be a positive integer, got \"x\""},
      {"ep=2x", "ep must be a positive integer, got \"2x\""},
      {"dp=", "dp must be a positive integer, got \"\""},
      {"mp=0", "mp must be a positive integer, got \"0\""},
      {"dp=-2", "dp must be a positive integer, got \"-2\""},
      {"dp=8", "dp=8 is more than the 4 ranks"},
      {"dp=99999999999999999999", "dp=99999999999999999999 is more than the 4 ranks"},
      {"dp=2", "dp x ep x mp is 2 ranks, the launch has 4"},
      {"dp=2,ep=4", "dp x ep x mp is 8 ranks, the launch has 4"},
      {"ep=3", "ep x mp = 3 does not divide the launch's 4 ranks"},
  };
  for (const auto& [spec, problem] : cases) {
    const auto [status, message] = error_of(spec, 4);
    EXPECT_EQ(status, sw::Status::kInvalidArgument) << spec << ": " << message;
    EXPECT_NE(message.find("parallel layout \"" + spec + "\": "), std::string::npos) << message;
    EXPECT_NE(message.find(problem), std::string::npos) << spec << ": " << message;
  }
  expect_layout(parse("ep=2,mp=2", 4), 1, 2, 2);  // experts and model parts together
}

// One rank of a world of `size` (only rank, size and split are used): split records the
// color it was called with and gives the key as the new group's rank, so a test run over
// every rank sees the groups.
class RecordingCommunicator final : public sw::Communicator {
 public:
  RecordingCommunicator(int rank, int size, int color = -1)
      : rank_(rank), size_(size), color_(color) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "recording"; }
  int color() const { return color_; }

  std::unique_ptr<sw::Communicator> split(int color, int key) override {
    return std::make_unique<RecordingCommunicator>(key, -1, color);
  }
  void all_reduce_sum(sw::Tensor&) override { unused(); }
  sw::Tensor all_gather(const sw::Tensor&) override { return unused(); }
  sw::Tensor all_to_all_v(const sw::Tensor&, const std::vector<int64_t>&,
                          const std::vector<int64_t>&) override {
    return unused();
  }
  void broadcast(sw::Tensor&, int) override { unused(); }
  void barrier() override { unused(); }
  [[noreturn]] void abort(int) override { std::abort(); }

 private:
  sw::Tensor unused() {
    ADD_FAILURE() << "a layout only splits the world";
    return {};
  }
  int rank_, size_, color_;
};

// Every rank's groups of a layout, as world ranks in group order.
struct Membership {
  std::vector<std::vector<int>> data_parallel, expert_parallel, model_parallel;
};

Membership groups_of(const std::string& spec, int world_size) {
  const sw::ParallelLayout layout = sw::parse_parallel_layout(spec, world_size);
  constexpr int kWorld = -1;  // the color standing for the world itself
  // Per rank, for each kind of group (data, expert, model parallel): its color, if any.
  std::vector<std::array<std::optional<int>, 3>> color_of(world_size);
  // (kind, color) -> each member's (key, world rank).
  std::map<std::pair<int, int>, std::vector<std::pair<int, int>>> members;
  for (int r = 0; r < world_size; ++r) {
    RecordingCommunicator world(r, world_size);
    const sw::ParallelCommunicators communicators(world, layout);
    const sw::ParallelGroups& g = communicators.groups();
    const sw::Communicator* groups[] = {g.data_parallel, g.expert_parallel, g.model_parallel};
    for (int kind = 0; kind < 3; ++kind) {
      if (!groups[kind]) continue;
      const bool is_world = groups[kind] == &world;
      const int color =
          is_world ? kWorld : static_cast<const RecordingCommunicator*>(groups[kind])->color();
      members[{kind, color}].push_back({is_world ? r : groups[kind]->rank(), r});
      color_of[r][kind] = color;
    }
  }
  Membership m;
  std::vector<std::vector<int>>* lists[] = {&m.data_parallel, &m.expert_parallel,
                                            &m.model_parallel};
  for (int r = 0; r < world_size; ++r)
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<int> ranks;
      if (color_of[r][kind]) {
        std::vector<std::pair<int, int>> by_key = members[{kind, *color_of[r][kind]}];
        std::sort(by_key.begin(), by_key.end());
        for (const auto& [key, rank] : by_key) ranks.push_back(rank);
      }
      lists[kind]->push_back(ranks);
    }
  return m;
}

using Groups = std::vector<std::vector<int>>;

TEST(ParallelCommunicators, DataAndExpertParallelGroupsOfFourRanks) {
  const Membership m = groups_of("dp=2,ep=2", 4);
  EXPECT_EQ(m.data_parallel, Groups(4, {0, 1, 2, 3}));  // the batch is split over every rank
  EXPECT_EQ(m.expert_parallel, (Groups{{0, 1}, {0, 1}, {2, 3}, {2, 3}}));
  EXPECT_EQ(m.model_parallel, Groups(4, std::vector<int>{}));
}

TEST(ParallelCommunicators, DataAndModelParallelGroupsOfFourRanks) {
  const Membership m = groups_of("dp=2,mp=2", 4);
  EXPECT_EQ(m.model_parallel, (Groups{{0, 1}, {0, 1}, {2, 3}, {2, 3}}));
  // The replicas: the ranks holding the same part of the model.
  EXPECT_EQ(m.data_parallel, (Groups{{0, 2}, {1, 3}, {0, 2}, {1, 3}}));
  EXPECT_EQ(m.expert_parallel, Groups(4, std::vector<int>{}));
}

TEST(ParallelCommunicators, ExpertAndModelParallelTogether) {
  // 4 ranks: model groups {0, 1} and {2, 3} hold expert shards 0 and 1; each batch shard
  // is a model group's, and the ranks holding the same model part exchange tokens.
  Membership m = groups_of("ep=2,mp=2", 4);
  EXPECT_EQ(m.model_parallel, (Groups{{0, 1}, {0, 1}, {2, 3}, {2, 3}}));
  EXPECT_EQ(m.data_parallel, (Groups{{0, 2}, {1, 3}, {0, 2}, {1, 3}}));
  EXPECT_EQ(m.expert_parallel, (Groups{{0, 2}, {1, 3}, {0, 2}, {1, 3}}));
  // 8 ranks, two replicas of that: the expert groups stay within a replica.
  m = groups_of("dp=2,ep=2,mp=2", 8);
  EXPECT_EQ(m.model_parallel,
            (Groups{{0, 1}, {0, 1}, {2, 3}, {2, 3}, {4, 5}, {4, 5}, {6, 7}, {6, 7}}));
  EXPECT_EQ(m.expert_parallel,
            (Groups{{0, 2}, {1, 3}, {0, 2}, {1, 3}, {4, 6}, {5, 7}, {4, 6}, {5, 7}}));
  EXPECT_EQ(m.data_parallel, (Groups{{0, 2, 4, 6},
                                     {1, 3, 5, 7},
                                     {0, 2, 4, 6},
                                     {1, 3, 5, 7},
                                     {0, 2, 4, 6},
                                     {1, 3, 5, 7},
                                     {0, 2, 4, 6},
                                     {1, 3, 5, 7}}));
}

TEST(ParallelCommunicators, PureDataParallelAndASingleProcess) {
  const Membership m = groups_of("dp=4", 4);
  EXPECT_EQ(m.data_parallel, Groups(4, {0, 1, 2, 3}));
  EXPECT_EQ(m.expert_parallel, Groups(4, std::vector<int>{}));
  EXPECT_EQ(m.model_parallel, Groups(4, std::vector<int>{}));

  RecordingCommunicator one(0, 1);
  const sw::ParallelCommunicators single(one, sw::parse_parallel_layout("dp=1", 1));
  EXPECT_EQ(single.groups().data_parallel, nullptr);
  EXPECT_EQ(single.groups().expert_parallel, nullptr);
  EXPECT_EQ(single.groups().model_parallel, nullptr);
}

TEST(ParallelCommunicators, RefusesALayoutOfAnotherWorldSize) {
  RecordingCommunicator world(0, 4);
  sw::ParallelLayout layout;
  layout.dp = 2;
  try {
    sw::ParallelCommunicators communicators(world, layout);
    ADD_FAILURE() << "a 2-rank layout over 4 ranks was accepted";
  } catch (const sw::Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not cover the world's 4 ranks"), std::string::npos)
        << e.what();
  }
}

}  // namespace
