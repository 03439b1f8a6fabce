// Data parallelism (docs/MATH.md §6): every replica holds the whole model and a shard of the
// global batch; gradients are summed over the replicas (in buckets, one all-reduce each),
// so every replica takes the same optimizer step a single process would take on the
// global batch.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/dist/communicator.h"
#include "core/model/batch.h"

namespace sw {

enum class Reduction {
  // An all-reduce per bucket: the backend's summation order (fast, scales).
  kAllReduce,
  // An all-gather per bucket, then a sum in rank order on every rank: the same additions,
  // in the same order, as one process accumulating the replicas' shards as micro-batches,
  // so data parallelism is bit for bit the single-process run. Needs size x the bucket.
  kRankOrdered,
};

// Sums the tensors over the communicator in place, packed into buckets of about
// bucket_bytes per dtype: a few large collectives rather than one per parameter.
void all_reduce_buckets(Communicator& comm, std::vector<std::pair<std::string, Tensor>>& tensors,
                        Reduction reduction = Reduction::kAllReduce,
                        size_t bucket_bytes = size_t{32} << 20);

// Rows [rank * B / size, (rank + 1) * B / size) of a global batch of B sequences; size must
// divide B.
Batch shard_batch(const Batch& global, int rank, int size);

}  // namespace sw
