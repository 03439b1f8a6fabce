#include "core/dist/communicator.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/tensor/error.h"

namespace sw {
namespace {

class FinishedCollective final : public PendingCollective {
 public:
  explicit FinishedCollective(Tensor result) : result_(std::move(result)) {}
  bool test() override { return true; }
  Tensor wait() override { return result_; }

 private:
  Tensor result_;
};

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  bool moves(const Device&) const override { return true; }  // nothing moves
  void all_reduce_sum(Tensor&) override {}
  Tensor all_gather(const Tensor& in) override { return in.clone(); }
  Tensor all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows) override {
    check_all_to_all(*this, send, send_rows, recv_rows);
    SW_CHECK_ARG(send_rows[0] == recv_rows[0], "all_to_all_v: a single rank sends itself ",
                 send_rows[0], " rows but expects ", recv_rows[0]);
    return send.clone();
  }
  void broadcast(Tensor&, int root) override {
    SW_CHECK_ARG(root == 0, "broadcast: root ", root, " is not a rank of a 1-rank communicator");
  }
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override { return local_communicator(); }
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

}  // namespace

std::unique_ptr<PendingCollective> finished_collective(Tensor result) {
  return std::make_unique<FinishedCollective>(std::move(result));
}

std::unique_ptr<PendingCollective> Communicator::start_all_reduce_sum(Tensor t) {
  all_reduce_sum(t);
  return finished_collective(t);
}

std::unique_ptr<PendingCollective> Communicator::start_all_gather(const Tensor& in) {
  return finished_collective(all_gather(in));
}

std::unique_ptr<Communicator> local_communicator() { return std::make_unique<LocalCommunicator>(); }

bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"})
    if (std::getenv(name)) return true;
  return false;
}

std::vector<int64_t> exchange_counts(Communicator& comm, const std::vector<int64_t>& counts) {
  SW_CHECK_ARG(static_cast<int>(counts.size()) == comm.size(), "exchange_counts: ", counts.size(),
               " counts for ", comm.size(), " ranks");
  const Tensor send = Tensor::from_vector<int64_t>(counts, {comm.size(), 1});
  const std::vector<int64_t> ones(static_cast<size_t>(comm.size()), 1);
  const Tensor recv = comm.all_to_all_v(send, ones, ones);
  return std::vector<int64_t>(recv.data<int64_t>(), recv.data<int64_t>() + recv.numel());
}

namespace {

// Bytes packed into i32 words (the last one zero-padded), the length kept apart.
Tensor pack_bytes(const std::string& bytes, int64_t words) {
  Tensor t = Tensor::zeros({words}, DType::i32);
  std::memcpy(t.raw(), bytes.data(), bytes.size());
  return t;
}

int64_t words_for(int64_t bytes) { return (bytes + 3) / 4; }

}  // namespace

std::vector<std::string> all_gather_bytes(Communicator& comm, const std::string& bytes) {
  const Tensor lengths =
      comm.all_gather(Tensor::from_vector<int64_t>({static_cast<int64_t>(bytes.size())}, {1}));
  int64_t longest = 0;
  for (int r = 0; r < comm.size(); ++r) longest = std::max(longest, lengths.data<int64_t>()[r]);
  const int64_t words = std::max<int64_t>(1, words_for(longest));
  const Tensor all = comm.all_gather(pack_bytes(bytes, words));  // [size * words]
  std::vector<std::string> out;
  for (int r = 0; r < comm.size(); ++r)
    out.emplace_back(reinterpret_cast<const char*>(all.data<int32_t>() + r * words),
                     static_cast<size_t>(lengths.data<int64_t>()[r]));
  return out;
}

std::string broadcast_bytes(Communicator& comm, const std::string& bytes, int root) {
  Tensor length = Tensor::from_vector<int64_t>({static_cast<int64_t>(bytes.size())}, {1});
  comm.broadcast(length, root);
  const int64_t n = length.data<int64_t>()[0];
  Tensor words =
      pack_bytes(comm.rank() == root ? bytes : std::string(), std::max<int64_t>(1, words_for(n)));
  comm.broadcast(words, root);
  return std::string(reinterpret_cast<const char*>(words.raw()), static_cast<size_t>(n));
}

void check_all_to_all(const Communicator& comm, const Tensor& send,
                      const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows) {
  SW_CHECK_ARG(static_cast<int>(send_rows.size()) == comm.size() &&
                   static_cast<int>(recv_rows.size()) == comm.size(),
               "all_to_all_v: ", send_rows.size(), " send and ", recv_rows.size(),
               " receive counts for ", comm.size(), " ranks");
  SW_CHECK_ARG(send.ndim() >= 1, "all_to_all_v: the tensor needs a row dimension");
  int64_t rows = 0;
  for (size_t r = 0; r < send_rows.size(); ++r) {
    SW_CHECK_ARG(send_rows[r] >= 0 && recv_rows[r] >= 0, "all_to_all_v: negative count for rank ",
                 r);
    rows += send_rows[r];
  }
  SW_CHECK_ARG(rows == send.dim(0), "all_to_all_v: counts send ", rows, " rows of ", send.dim(0));
}

#ifndef SW_WITH_NCCL
bool nccl_built() { return false; }
std::unique_ptr<Communicator> nccl_communicator(Communicator&, int) {
  throw Error(Status::kUnsupported,
              "libswitch was built without NCCL (it needs CUDA and NCCL; SW_ENABLE_NCCL)");
}
#endif

#ifndef SW_WITH_MPI
bool mpi_built() { return false; }
std::unique_ptr<Communicator> mpi_world() {
  throw Error(Status::kUnsupported,
              "libswitch was built without MPI (install libopenmpi-dev and rebuild)");
}
std::unique_ptr<Communicator> mpi_communicator(const void*) { return mpi_world(); }
#endif

}  // namespace sw
