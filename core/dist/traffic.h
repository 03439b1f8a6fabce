// Bytes a rank sends, by collective: a Communicator that counts what passes through another
// (and through every group split from it), so a run can report its traffic per step and
// `switch plan` can be checked against it (core/dist/plan.h counts the same way).
//
// What "sent" means is each collective's usual algorithm on p ranks, not whatever the
// backend picks internally (MPI may choose others): an all-reduce of n bytes sends
// 2 (p - 1) / p * n (a ring: reduce-scatter then all-gather, what nccl-tests call bus
// bytes); an all-gather of n bytes per rank sends (p - 1) * n; an all-to-all sends the rows
// addressed to other ranks; a broadcast of n bytes sends (p - 1) / p * n (a pipelined chain).
#pragma once

#include <cstdint>
#include <memory>

#include "core/dist/communicator.h"

namespace sw {

struct TrafficCounts {
  double all_reduce = 0, all_gather = 0, all_to_all = 0, broadcast = 0;
  double total() const { return all_reduce + all_gather + all_to_all + broadcast; }
  TrafficCounts operator-(const TrafficCounts& o) const {
    return {all_reduce - o.all_reduce, all_gather - o.all_gather, all_to_all - o.all_to_all,
            broadcast - o.broadcast};
  }
};

// Wraps `inner` (owned); the counts are shared with every communicator split from it, so
// one TrafficCounts holds all of a rank's traffic.
class CountingCommunicator final : public Communicator {
 public:
  explicit CountingCommunicator(std::unique_ptr<Communicator> inner,
                                std::shared_ptr<TrafficCounts> counts = nullptr);

  const TrafficCounts& counts() const { return *counts_; }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return inner_->backend(); }
  bool moves(const Device& device) const override { return inner_->moves(device); }
  void all_reduce_sum(Tensor& t) override;
  Tensor all_gather(const Tensor& in) override;
  std::unique_ptr<PendingCollective> start_all_reduce_sum(Tensor t) override;
  std::unique_ptr<PendingCollective> start_all_gather(const Tensor& in) override;
  Tensor all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows) override;
  void broadcast(Tensor& t, int root) override;
  void barrier() override { inner_->barrier(); }
  std::unique_ptr<Communicator> split(int color, int key) override;
  [[noreturn]] void abort(int code) override;

 private:
  void count_all_reduce(const Tensor& t) const;
  void count_all_gather(const Tensor& in) const;

  std::unique_ptr<Communicator> inner_;
  std::shared_ptr<TrafficCounts> counts_;
};

}  // namespace sw
