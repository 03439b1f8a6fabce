// Distributed training step on the CPU under mpirun (scripts/bench-dist): a Switch model
// with 16 experts per sparse layer trained data parallel (--ep 1) or expert parallel
// (--ep N: experts over N ranks), the global batch split over the ranks. Rank 0 prints the
// median step time over the timed steps and the bytes each rank sends per step (counted as
// core/dist/traffic.h counts them).
//
// --overlap 0 sums the gradients after the backward instead of during it, --bucket-kib sets
// the buckets' size and --all-reduce 1 sums by all-reduce rather than rank-ordered; the
// line then also gives the median time the step waited for the sums after the backward.
//
//   mpirun -np R sw_dist_bench --ep E [--mp M] [--steps S] [--batch B] [--overlap 0|1]
//                              [--bucket-kib K] [--all-reduce 0|1]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/dist/communicator.h"
#include "core/dist/data_parallel.h"
#include "core/dist/traffic.h"
#include "core/model/switch_transformer.h"
#include "core/train/trainer.h"
#include "tests/bench/bench_util.h"

namespace sw {
namespace {

int64_t flag(int argc, char** argv, const char* name, int64_t fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::atoll(argv[i + 1]);
  return fallback;
}

}  // namespace
}  // namespace sw

int main(int argc, char** argv) {
  using namespace sw;
  CountingCommunicator world(launched_by_mpi() ? mpi_world() : local_communicator());
  const int64_t ep = flag(argc, argv, "--ep", 1), mp = flag(argc, argv, "--mp", 1),
                steps = flag(argc, argv, "--steps", 6), batch = flag(argc, argv, "--batch", 16);
  if (world.size() % (ep * mp) != 0 || batch % (world.size() / mp) != 0 || (ep > 1 && mp > 1)) {
    std::fprintf(stderr, "--ep %lld or --mp %lld and --batch %lld must divide the %d ranks' work\n",
                 static_cast<long long>(ep), static_cast<long long>(mp),
                 static_cast<long long>(batch), world.size());
    return 2;
  }
  ModelConfig config = preset("tiny");
  config.set_num_experts(16);
  config.set_d_model(128);
  config.set_d_ff(512);
  config.set_d_kv(32);
  const std::unique_ptr<Communicator> expert_group =
      ep > 1 ? world.split(static_cast<int>(world.rank() / ep), static_cast<int>(world.rank() % ep))
             : nullptr;
  // Model parallelism: groups of mp consecutive ranks share a batch shard; the ranks with
  // the same place in their group are the data-parallel replicas.
  const int rank = world.rank();
  const std::unique_ptr<Communicator> model_group =
      mp > 1 ? world.split(static_cast<int>(rank / mp), static_cast<int>(rank % mp)) : nullptr;
  const std::unique_ptr<Communicator> replicas =
      mp > 1 ? world.split(static_cast<int>(rank % mp), static_cast<int>(rank / mp)) : nullptr;
  Communicator& dp = replicas ? *replicas : static_cast<Communicator&>(world);
  SwitchTransformer model(config, 0, DType::f32, Device::cpu(), expert_group.get(),
                          model_group.get());
  TrainOptions options;
  options.data_parallel = &dp;
  options.expert_parallel = expert_group.get();
  const bool overlap = flag(argc, argv, "--overlap", 1) != 0;
  const int64_t bucket_kib = flag(argc, argv, "--bucket-kib", kDefaultBucketBytes >> 10);
  const bool all_reduce = flag(argc, argv, "--all-reduce", 0) != 0;
  options.overlap_reduction = overlap;
  options.gradient_bucket_bytes = static_cast<size_t>(bucket_kib) << 10;
  options.gradient_reduction = all_reduce ? Reduction::kAllReduce : Reduction::kRankOrdered;
  Trainer trainer(model, options);
  const Batch global = bench::random_batch(config, batch, 128, 32);
  const Batch shard = shard_batch(global, dp.rank(), dp.size());
  std::vector<double> seconds, waits;
  double step_bytes = 0;
  for (int64_t s = 0; s < steps + 1; ++s) {  // the first step warms up
    world.barrier();
    const TrafficCounts before = world.counts();
    const auto start = std::chrono::steady_clock::now();
    const TrainMetrics m = trainer.step({shard});
    world.barrier();
    if (s > 0) {
      seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      waits.push_back(m.phases.reduce);
    }
    step_bytes = (world.counts() - before).total();
  }
  std::sort(seconds.begin(), seconds.end());
  std::sort(waits.begin(), waits.end());
  if (world.rank() == 0)
    std::printf(
        "ranks %d  dp %lld  ep %lld  mp %lld  step %.3f s  %.1f MB per rank per step  %.0f "
        "tokens/s  sums %s%s, %lld KiB buckets: waited %.4f s after the backward\n",
        world.size(), static_cast<long long>(world.size() / (ep * mp)), static_cast<long long>(ep),
        static_cast<long long>(mp), seconds[seconds.size() / 2], step_bytes / 1e6,
        static_cast<double>(batch * (128 + 32)) / seconds[seconds.size() / 2],
        all_reduce ? "all-reduce" : "rank-ordered", overlap ? " overlapped" : " after",
        static_cast<long long>(bucket_kib), waits[waits.size() / 2]);
  return 0;
}
