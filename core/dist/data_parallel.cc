#include "core/dist/data_parallel.h"

#include "core/ops/elementwise.h"
#include "core/tensor/error.h"

namespace sw {

void all_reduce_buckets(Communicator& comm, std::vector<std::pair<std::string, Tensor>>& tensors,
                        Reduction reduction, size_t bucket_bytes) {
  if (comm.size() == 1) return;
  size_t begin = 0;
  while (begin < tensors.size()) {
    // The next bucket: consecutive tensors of one dtype on one device up to bucket_bytes
    // (at least one), packed on that device.
    const DType dtype = tensors[begin].second.dtype();
    const Device device = tensors[begin].second.device();
    size_t end = begin;
    int64_t elements = 0;
    size_t bytes = 0;
    while (end < tensors.size() && tensors[end].second.dtype() == dtype &&
           tensors[end].second.device() == device &&
           (end == begin || bytes + tensors[end].second.nbytes() <= bucket_bytes)) {
      elements += tensors[end].second.numel();
      bytes += tensors[end].second.nbytes();
      ++end;
    }
    Tensor bucket = Tensor::empty({elements}, dtype, device);
    int64_t at = 0;
    for (size_t i = begin; i < end; ++i) {
      const Tensor& t = tensors[i].second;
      bucket.slice(at, at + t.numel()).copy_from(t.view({t.numel()}));
      at += t.numel();
    }
    if (reduction == Reduction::kAllReduce) {
      comm.all_reduce_sum(bucket);
    } else {
      const Tensor all = comm.all_gather(bucket.view({1, elements}));
      bucket.copy_from(all.slice(0, 1).view({elements}));
      for (int r = 1; r < comm.size(); ++r) ops::add_(bucket, all.slice(r, r + 1).view({elements}));
    }
    at = 0;
    for (size_t i = begin; i < end; ++i) {
      Tensor flat = tensors[i].second.view({tensors[i].second.numel()});
      flat.copy_from(bucket.slice(at, at + flat.numel()));
      at += flat.numel();
    }
    begin = end;
  }
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
