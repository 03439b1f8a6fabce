// Data parallelism (docs/MATH.md §6): every replica holds the whole model and a shard of the
// global batch; gradients are summed over the replicas (in buckets, one all-reduce each),
// so every replica takes the same optimizer step a single process would take on the
// global batch.
#pragma once

#include <cstdint>
#include <memory>
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

constexpr size_t kDefaultBucketBytes = size_t{32} << 20;
// Buckets whose collectives may run at once: each holds a packed copy of its gradients
// (and, rank-ordered, every replica's copy) while the backward's activations still live.
constexpr int kDefaultBucketsInFlight = 2;

// Sums tensors over the communicator in place, packed into buckets: consecutive tensors of
// one dtype on one device, up to bucket_bytes (at least one), so that a few large
// collectives move them rather than one per parameter. A bucket's collective starts as
// soon as the bucket is complete (when the next tensor does not fit it) and runs while
// the caller goes on (the rest of the backward); at most buckets_in_flight run at once
// (starting one more first finishes the oldest). finish() completes them all. Every rank
// adds tensors of the same shapes and dtypes in the same order. The tensors added belong
// to it until finish() returns: nothing else reads or writes them.
class BucketedReduction {
 public:
  BucketedReduction(Communicator& comm, Reduction reduction,
                    size_t bucket_bytes = kDefaultBucketBytes,
                    int buckets_in_flight = kDefaultBucketsInFlight);
  BucketedReduction(const BucketedReduction&) = delete;
  BucketedReduction& operator=(const BucketedReduction&) = delete;
  ~BucketedReduction();

  void add(Tensor tensor);
  // Advances the started collectives without blocking (MPI moves them only inside its
  // calls) and unpacks those that have finished.
  void progress();
  // Starts the last bucket, waits for every bucket and unpacks the sums into the tensors.
  void finish();
  int64_t buckets_started() const { return started_; }

 private:
  struct Bucket {
    std::vector<Tensor> tensors;
    size_t bytes = 0;
    Tensor packed;  // once started: the tensors, one after another (all-reduced in place)
    std::unique_ptr<PendingCollective> pending;
  };
  void start(Bucket bucket);
  void complete(Bucket& bucket);  // waits, sums rank-ordered buckets, unpacks

  Communicator& comm_;
  Reduction reduction_;
  size_t bucket_bytes_;
  int buckets_in_flight_;
  Bucket open_;
  std::vector<Bucket> in_flight_;  // oldest first
  int64_t started_ = 0;
};

// Sums the tensors over the communicator in place through a BucketedReduction, in order.
void all_reduce_buckets(Communicator& comm, std::vector<std::pair<std::string, Tensor>>& tensors,
                        Reduction reduction = Reduction::kAllReduce,
                        size_t bucket_bytes = kDefaultBucketBytes);

// Rows [rank * B / size, (rank + 1) * B / size) of a global batch of B sequences; size must
// divide B.
Batch shard_batch(const Batch& global, int rank, int size);

}  // namespace sw
