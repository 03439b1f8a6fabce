#include "core/dist/traffic.h"

#include <cstdlib>
#include <utility>

namespace sw {

CountingCommunicator::CountingCommunicator(std::unique_ptr<Communicator> inner,
                                           std::shared_ptr<TrafficCounts> counts)
    : inner_(std::move(inner)),
      counts_(counts ? std::move(counts) : std::make_shared<TrafficCounts>()) {}

void CountingCommunicator::count_all_reduce(const Tensor& t) const {
  const double p = size();
  counts_->all_reduce += 2 * (p - 1) / p * static_cast<double>(t.nbytes());
}

void CountingCommunicator::count_all_gather(const Tensor& in) const {
  counts_->all_gather += (size() - 1) * static_cast<double>(in.nbytes());
}

void CountingCommunicator::all_reduce_sum(Tensor& t) {
  inner_->all_reduce_sum(t);
  count_all_reduce(t);
}

Tensor CountingCommunicator::all_gather(const Tensor& in) {
  Tensor out = inner_->all_gather(in);
  count_all_gather(in);
  return out;
}

std::unique_ptr<PendingCollective> CountingCommunicator::start_all_reduce_sum(Tensor t) {
  count_all_reduce(t);
  return inner_->start_all_reduce_sum(t);
}

std::unique_ptr<PendingCollective> CountingCommunicator::start_all_gather(const Tensor& in) {
  count_all_gather(in);
  return inner_->start_all_gather(in);
}

Tensor CountingCommunicator::all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_rows,
                                          const std::vector<int64_t>& recv_rows) {
  Tensor out = inner_->all_to_all_v(send, send_rows, recv_rows);
  int64_t rows = 0, remote = 0;
  for (size_t r = 0; r < send_rows.size(); ++r) {
    rows += send_rows[r];
    if (static_cast<int>(r) != rank()) remote += send_rows[r];
  }
  if (rows > 0)
    counts_->all_to_all += static_cast<double>(send.nbytes()) / static_cast<double>(rows) *
                           static_cast<double>(remote);
  return out;
}

void CountingCommunicator::broadcast(Tensor& t, int root) {
  inner_->broadcast(t, root);
  const double p = size();
  counts_->broadcast += (p - 1) / p * static_cast<double>(t.nbytes());
}

void CountingCommunicator::abort(int code) {
  inner_->abort(code);
  std::abort();  // not reached: the inner abort ends the process
}

std::unique_ptr<Communicator> CountingCommunicator::split(int color, int key) {
  return std::make_unique<CountingCommunicator>(inner_->split(color, key), counts_);
}

}  // namespace sw
