// Communicator: the one interface the parallel algorithms talk to (DESIGN.md,
// Distributed). Backends: local (a single rank), MPI (host tensors; also what bootstraps
// NCCL), NCCL (device tensors). The algorithms are written once against this, so
// `mpirun -np 4` on the CPU runs exactly the code a GPU cluster runs over NCCL.
//
// Every collective is called by every rank of the communicator in the same order, with
// tensors of the same dtype (and, where it says so, the same shape). A failure (a peer
// lost, a mismatched call the backend detects) is an sw::Error with Status::kDistributed
// naming the call.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor/tensor.h"

namespace sw {

// A collective that has started and not finished (Communicator::start_all_reduce_sum,
// start_all_gather). Its tensors are the collective's until wait() returns: the caller
// neither reads nor writes them before.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  // Moves it along without blocking and says whether it has finished (MPI advances
  // non-blocking collectives only inside MPI calls, so a caller pokes it now and then).
  virtual bool test() = 0;
  // Finishes it and returns its result: the summed tensor, or the gathered rows. On a
  // device, work queued on the device's stream after wait() sees the result.
  virtual Tensor wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;  // "local", "mpi", "nccl", "mpi+nccl", "mpi+staged"
  // Whether the collectives take tensors on `device` (the MPI backend: host tensors only;
  // core/dist/device_communicator.h: the host and the rank's GPU).
  virtual bool moves(const Device& device) const { return device.is_cpu(); }

  // Elementwise sum over ranks, in place (f32, f64, i32, i64).
  virtual void all_reduce_sum(Tensor& t) = 0;
  // Every rank's `in` (same shape everywhere) stacked along dim 0 in rank order.
  virtual Tensor all_gather(const Tensor& in) = 0;
  // Rows of `send` (dim 0) in consecutive blocks, send_rows[r] of them to rank r; returns
  // the rows received, rank 0's first, recv_rows[r] from rank r (known from
  // exchange_counts). Row shapes and dtypes agree on every rank.
  virtual Tensor all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_rows,
                              const std::vector<int64_t>& recv_rows) = 0;
  // all_reduce_sum and all_gather started and left running, so that the caller can compute
  // while they move (data parallelism overlaps the gradient sums with the backward). Every
  // rank starts its collectives in the same order. The default runs the collective now and
  // returns it finished; MPI and NCCL start it and return at once.
  virtual std::unique_ptr<PendingCollective> start_all_reduce_sum(Tensor t);
  virtual std::unique_ptr<PendingCollective> start_all_gather(const Tensor& in);
  // Root's tensor into every rank's (same shape and dtype), in place.
  virtual void broadcast(Tensor& t, int root) = 0;
  virtual void barrier() = 0;
  // Ranks passing the same color form a new communicator, ordered by key (collective).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  // Ends every rank's process with this exit code: what a rank that hits an error calls,
  // so that the others do not wait forever in their next collective.
  [[noreturn]] virtual void abort(int code) = 0;
};

// A collective that finished when it was started: its result, as it is.
std::unique_ptr<PendingCollective> finished_collective(Tensor result);

// A communicator of one rank: every collective is the identity.
std::unique_ptr<Communicator> local_communicator();

// MPI_COMM_WORLD, MPI initialised on first use (finalised at exit). A build without MPI
// says so (Status::kUnsupported).
std::unique_ptr<Communicator> mpi_world();
// The ranks of a caller's MPI communicator: `mpi_comm` points to an MPI_Comm of the MPI
// this library was built with, duplicated here (the caller keeps and frees its own). The
// caller has initialised MPI. kUnsupported in a build without MPI.
std::unique_ptr<Communicator> mpi_communicator(const void* mpi_comm);
bool mpi_built();
// NCCL over this process's CUDA device, one rank per bootstrap rank (the bootstrap, e.g.
// mpi_world(), carries the unique id). A build without NCCL says so (kUnsupported).
std::unique_ptr<Communicator> nccl_communicator(Communicator& bootstrap, int device);
bool nccl_built();

// Whether this process was started by an MPI launcher (mpirun, srun): its environment
// names a rank. Checked before initialising MPI.
bool launched_by_mpi();

// One int64 per peer: counts[r] goes to rank r; returns what each rank sent this one.
std::vector<int64_t> exchange_counts(Communicator& comm, const std::vector<int64_t>& counts);

// Every rank's bytes, in rank order (collective; lengths may differ).
std::vector<std::string> all_gather_bytes(Communicator& comm, const std::string& bytes);
// Root's bytes on every rank (collective; the others' argument is ignored).
std::string broadcast_bytes(Communicator& comm, const std::string& bytes, int root);

// Checks a send/recv layout against the tensor and the communicator's size.
void check_all_to_all(const Communicator& comm, const Tensor& send,
                      const std::vector<int64_t>& send_rows, const std::vector<int64_t>& recv_rows);

}  // namespace sw
