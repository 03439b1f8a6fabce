// The MPI backend: host tensors over OpenMPI (or any MPI). Errors come back as return
// codes (MPI_ERRORS_RETURN) and become sw::Error(kDistributed) naming the call.
// Only MPI's C interface: its deprecated C++ bindings would need libmpi_cxx.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <climits>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>

#include "core/dist/communicator.h"
#include "core/tensor/error.h"

namespace sw {
namespace {

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(rc, text, &length);
  throw Error(Status::kDistributed, std::string(call) + ": " + std::string(text, length));
}

MPI_Datatype mpi_type(DType dtype, bool for_sum) {
  switch (dtype) {
    case DType::f32:
      return MPI_FLOAT;
    case DType::f64:
      return MPI_DOUBLE;
    case DType::i32:
      return MPI_INT32_T;
    case DType::i64:
      return MPI_INT64_T;
    case DType::bf16:
      SW_CHECK(!for_sum, Status::kUnsupported, "MPI: sums of bf16 tensors are not supported");
      return MPI_UINT16_T;
  }
  throw Error(Status::kInternal, "MPI: unknown dtype");
}

int mpi_count(int64_t n, const char* call) {
  SW_CHECK(n >= 0 && n <= INT_MAX, Status::kUnsupported, call, ": ", n,
           " elements exceed MPI's int count; send it in parts");
  return static_cast<int>(n);
}

void require_host(const Tensor& t, const char* call) {
  SW_CHECK_ARG(t.device().is_cpu(), call, ": the MPI backend moves host tensors, got one on ",
               t.device().str());
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void ensure_initialized() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) return;
  int provided = 0;
  check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  std::atexit(finalize_at_exit);
}

// A non-blocking MPI collective: its request and the tensors MPI reads and writes.
class MpiPending final : public PendingCollective {
 public:
  MpiPending(Tensor result, Tensor input, const char* call)
      : result_(std::move(result)), input_(std::move(input)), call_(call) {}
  MpiPending(const MpiPending&) = delete;
  MpiPending& operator=(const MpiPending&) = delete;
  ~MpiPending() override {
    if (done_) return;
    if (std::uncaught_exceptions() > 0) {
      // Unwinding from an error, after which the caller aborts every rank: a wait could
      // hang on a peer that never starts this collective, and MPI may still write the
      // buffers, so they are kept to the process's end instead.
      new Tensor(result_);
      new Tensor(input_);
      return;
    }
    MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }

  MPI_Request* request() { return &request_; }
  bool test() override {
    int finished = 0;
    if (!done_) check_mpi(MPI_Test(&request_, &finished, MPI_STATUS_IGNORE), call_);
    done_ = done_ || finished != 0;
    return done_;
  }
  Tensor wait() override {
    if (!done_) check_mpi(MPI_Wait(&request_, MPI_STATUS_IGNORE), call_);
    done_ = true;
    return result_;
  }

 private:
  Tensor result_, input_;
  const char* call_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  bool done_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    check_mpi(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owned_ && !finalized) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce_sum(Tensor& t) override {
    require_host(t, "all_reduce_sum");
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, t.raw(), mpi_count(t.numel(), "MPI_Allreduce"),
                            mpi_type(t.dtype(), true), MPI_SUM, comm_),
              "MPI_Allreduce");
  }

  Tensor all_gather(const Tensor& in) override {
    require_host(in, "all_gather");
    Tensor out = gathered(in);
    const MPI_Datatype type = mpi_type(in.dtype(), false);
    const int n = mpi_count(in.numel(), "MPI_Allgather");
    check_mpi(MPI_Allgather(in.raw(), n, type, out.raw(), n, type, comm_), "MPI_Allgather");
    return out;
  }

  std::unique_ptr<PendingCollective> start_all_reduce_sum(Tensor t) override {
    require_host(t, "start_all_reduce_sum");
    auto pending = std::make_unique<MpiPending>(t, Tensor(), "MPI_Iallreduce");
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, t.raw(), mpi_count(t.numel(), "MPI_Iallreduce"),
                             mpi_type(t.dtype(), true), MPI_SUM, comm_, pending->request()),
              "MPI_Iallreduce");
    return pending;
  }

  std::unique_ptr<PendingCollective> start_all_gather(const Tensor& in) override {
    require_host(in, "start_all_gather");
    Tensor out = gathered(in);
    auto pending = std::make_unique<MpiPending>(out, in, "MPI_Iallgather");
    const MPI_Datatype type = mpi_type(in.dtype(), false);
    const int n = mpi_count(in.numel(), "MPI_Iallgather");
    check_mpi(MPI_Iallgather(in.raw(), n, type, out.raw(), n, type, comm_, pending->request()),
              "MPI_Iallgather");
    return pending;
  }

  Tensor all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows) override {
    require_host(send, "all_to_all_v");
    check_all_to_all(*this, send, send_rows, recv_rows);
    const int64_t row = shape_numel(Shape(send.shape().begin() + 1, send.shape().end()));
    std::vector<int> send_counts(size_), send_displs(size_), recv_counts(size_), recv_displs(size_);
    int64_t s = 0, r = 0;  // element offsets
    for (int i = 0; i < size_; ++i) {
      send_counts[i] = mpi_count(send_rows[i] * row, "MPI_Alltoallv");
      send_displs[i] = mpi_count(s, "MPI_Alltoallv");
      recv_counts[i] = mpi_count(recv_rows[i] * row, "MPI_Alltoallv");
      recv_displs[i] = mpi_count(r, "MPI_Alltoallv");
      s += send_rows[i] * row;
      r += recv_rows[i] * row;
    }
    Shape shape = send.shape();
    shape[0] = 0;
    for (int64_t n : recv_rows) shape[0] += n;
    Tensor out = Tensor::empty(shape, send.dtype());
    const MPI_Datatype type = mpi_type(send.dtype(), false);
    check_mpi(MPI_Alltoallv(send.raw(), send_counts.data(), send_displs.data(), type, out.raw(),
                            recv_counts.data(), recv_displs.data(), type, comm_),
              "MPI_Alltoallv");
    return out;
  }

  void broadcast(Tensor& t, int root) override {
    require_host(t, "broadcast");
    SW_CHECK_ARG(root >= 0 && root < size_, "broadcast: root ", root, " is not in [0, ", size_,
                 ")");
    check_mpi(MPI_Bcast(t.raw(), mpi_count(t.numel(), "MPI_Bcast"), mpi_type(t.dtype(), false),
                        root, comm_),
              "MPI_Bcast");
  }

  void barrier() override { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }

  [[noreturn]] void abort(int code) override {
    MPI_Abort(comm_, code);
    std::_Exit(code);  // MPI_Abort does not return; this says so to the compiler
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    SW_CHECK_ARG(color >= 0, "split: color must be >= 0, got ", color);
    MPI_Comm sub;
    check_mpi(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
    return std::make_unique<MpiCommunicator>(sub, true);
  }

 private:
  // The all-gather's output: size() blocks of `in`'s rows.
  Tensor gathered(const Tensor& in) const {
    Shape shape = in.shape();
    SW_CHECK_ARG(!shape.empty(), "all_gather: the tensor needs a row dimension");
    shape[0] *= size_;
    return Tensor::empty(shape, in.dtype());
  }

  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool mpi_built() { return true; }

std::unique_ptr<Communicator> mpi_world() {
  ensure_initialized();
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false);
}

std::unique_ptr<Communicator> mpi_communicator(const void* mpi_comm) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  SW_CHECK(initialized, Status::kDistributed,
           "mpi_comm: MPI is not initialised (the caller of a communicator of its own "
           "initialises MPI)");
  MPI_Comm dup;
  check_mpi(MPI_Comm_dup(*static_cast<const MPI_Comm*>(mpi_comm), &dup), "MPI_Comm_dup");
  return std::make_unique<MpiCommunicator>(dup, true);
}

}  // namespace sw
