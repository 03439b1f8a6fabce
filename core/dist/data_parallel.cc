#include "core/dist/data_parallel.h"

#include <cstddef>
#include <utility>

#include "core/ops/elementwise.h"
#include "core/tensor/error.h"

namespace sw {

BucketedReduction::BucketedReduction(Communicator& comm, Reduction reduction, size_t bucket_bytes,
                                     int buckets_in_flight)
    : comm_(comm),
      reduction_(reduction),
      bucket_bytes_(bucket_bytes),
      buckets_in_flight_(buckets_in_flight) {
  SW_CHECK_ARG(buckets_in_flight >= 1, "BucketedReduction: buckets_in_flight must be >= 1, got ",
               buckets_in_flight);
}

// Pending collectives finish (their destructors wait) before their tensors are released.
BucketedReduction::~BucketedReduction() = default;

void BucketedReduction::add(Tensor tensor) {
  if (comm_.size() == 1) return;
  if (!open_.tensors.empty()) {
    const Tensor& first = open_.tensors.front();
    if (first.dtype() != tensor.dtype() || first.device() != tensor.device() ||
        open_.bytes + tensor.nbytes() > bucket_bytes_)
      start(std::exchange(open_, Bucket()));
  }
  open_.bytes += tensor.nbytes();
  open_.tensors.push_back(std::move(tensor));
}

void BucketedReduction::start(Bucket bucket) {
  while (static_cast<int>(in_flight_.size()) >= buckets_in_flight_) {
    complete(in_flight_.front());
    in_flight_.erase(in_flight_.begin());
  }
  int64_t elements = 0;
  for (const Tensor& t : bucket.tensors) elements += t.numel();
  const Tensor& first = bucket.tensors.front();
  Tensor packed = Tensor::empty({elements}, first.dtype(), first.device());
  int64_t at = 0;
  for (const Tensor& t : bucket.tensors) {
    packed.slice(at, at + t.numel()).copy_from(t.view({t.numel()}));
    at += t.numel();
  }
  bucket.pending = reduction_ == Reduction::kAllReduce
                       ? comm_.start_all_reduce_sum(packed)
                       : comm_.start_all_gather(packed.view({1, elements}));
  bucket.packed = packed;
  in_flight_.push_back(std::move(bucket));
  ++started_;
}

void BucketedReduction::complete(Bucket& bucket) {
  const Tensor result = bucket.pending->wait();
  Tensor& sum = bucket.packed;
  if (reduction_ == Reduction::kRankOrdered) {
    // Every rank's bucket, summed in rank order into this rank's: the same additions on
    // every rank.
    const int64_t elements = sum.numel();
    sum.copy_from(result.slice(0, 1).view({elements}));
    for (int r = 1; r < comm_.size(); ++r) ops::add_(sum, result.slice(r, r + 1).view({elements}));
  }
  int64_t at = 0;
  for (Tensor& t : bucket.tensors) {
    t.view({t.numel()}).copy_from(sum.slice(at, at + t.numel()));
    at += t.numel();
  }
  bucket = Bucket();
}

void BucketedReduction::progress() {
  for (size_t i = 0; i < in_flight_.size();) {
    if (in_flight_[i].pending->test()) {
      complete(in_flight_[i]);
      in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
}

void BucketedReduction::finish() {
  if (!open_.tensors.empty()) start(std::exchange(open_, Bucket()));
  for (Bucket& b : in_flight_) complete(b);
  in_flight_.clear();
}

void all_reduce_buckets(Communicator& comm, std::vector<std::pair<std::string, Tensor>>& tensors,
                        Reduction reduction, size_t bucket_bytes) {
  BucketedReduction sums(comm, reduction, bucket_bytes);
  for (auto& named : tensors) sums.add(named.second);
  sums.finish();
}

Batch shard_batch(const Batch& global, int rank, int size) {
  const int64_t n = global.input_ids.dim(0);
  SW_CHECK_ARG(size >= 1 && rank >= 0 && rank < size, "shard_batch: rank ", rank, " of ", size);
  SW_CHECK_ARG(n % size == 0, "data parallel: a global batch of ", n,
               " sequences does not split over ", size, " replicas");
  const int64_t lo = n / size * rank, hi = n / size * (rank + 1);
  auto rows = [&](const Tensor& t) { return t.defined() ? t.slice(lo, hi) : Tensor(); };
  return {rows(global.input_ids), rows(global.attention_mask), rows(global.decoder_input_ids),
          rows(global.decoder_attention_mask), rows(global.labels)};
}

}  // namespace sw
