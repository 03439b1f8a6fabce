// The NCCL backend: device tensors, one NCCL communicator per process on its CUDA device,
// bootstrapped over a host communicator (rank 0 makes the unique id and broadcasts it).
// Blocking collectives run on the device's stream (kernels/device_context.h) and are
// complete when they return, like the MPI backend's. Started ones (start_all_reduce_sum,
// start_all_gather) run on a stream of their own, ordered after the work already queued
// on the device's stream, and wait() orders the device's stream after them: the backward
// goes on computing while they move. Every failure names the call and NCCL's message.
#include <nccl.h>

#include <cstring>
#include <exception>
#include <string>
#include <utility>

#include "core/dist/communicator.h"
#include "kernels/device_context.h"

namespace sw {
namespace {

void check_nccl(ncclResult_t rc, const char* call) {
  if (rc == ncclSuccess) return;
  throw Error(Status::kDistributed, std::string(call) + ": " + ncclGetErrorString(rc));
}

ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return ncclFloat32;
    case DType::f64:
      return ncclFloat64;
    case DType::bf16:
      return ncclBfloat16;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
  }
  throw Error(Status::kInternal, "NCCL: unknown dtype");
}

// A collective queued on the communicator's own stream; `done` is recorded after it.
class NcclPending final : public PendingCollective {
 public:
  NcclPending(Tensor result, Tensor input, cudaStream_t compute, cudaEvent_t done)
      : result_(std::move(result)), input_(std::move(input)), compute_(compute), done_(done) {}
  NcclPending(const NcclPending&) = delete;
  NcclPending& operator=(const NcclPending&) = delete;
  // The caching allocator reuses a freed block for the device's stream at once, so that
  // stream waits for the collective before these tensors can go back to it.
  ~NcclPending() override {
    if (!waited_) cudaStreamWaitEvent(compute_, done_, 0);
    cudaEventDestroy(done_);
  }
  bool test() override {
    const cudaError_t status = cudaEventQuery(done_);
    if (status == cudaErrorNotReady) return false;
    SW_CUDA_CHECK(status);
    return true;
  }
  Tensor wait() override {
    if (!waited_) SW_CUDA_CHECK(cudaStreamWaitEvent(compute_, done_, 0));
    waited_ = true;
    return result_;
  }

 private:
  Tensor result_, input_;
  cudaStream_t compute_;
  cudaEvent_t done_;
  bool waited_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int device) : comm_(comm), device_(device) {
    check_nccl(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
    check_nccl(ncclCommCount(comm_, &size_), "ncclCommCount");
    kernels::device_context(device_);  // makes the device current
    SW_CUDA_CHECK(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking));
  }
  // Unwinding from an error, the other ranks may be blocked in a collective that
  // ncclCommDestroy would wait on: the communicator is left to the process's end (the
  // caller aborts every rank).
  ~NcclCommunicator() override {
    if (std::uncaught_exceptions() != 0) return;
    ncclCommDestroy(comm_);
    cudaStreamDestroy(side_stream_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  bool moves(const Device& device) const override { return device == Device::cuda(device_); }

  void all_reduce_sum(Tensor& t) override {
    check_device(t, "all_reduce_sum");
    check_nccl(
        ncclAllReduce(t.raw(), t.raw(), t.numel(), nccl_type(t.dtype()), ncclSum, comm_, stream()),
        "ncclAllReduce");
    finish();
  }

  Tensor all_gather(const Tensor& in) override {
    check_device(in, "all_gather");
    Tensor out = gathered(in);
    check_nccl(
        ncclAllGather(in.raw(), out.raw(), in.numel(), nccl_type(in.dtype()), comm_, stream()),
        "ncclAllGather");
    finish();
    return out;
  }

  std::unique_ptr<PendingCollective> start_all_reduce_sum(Tensor t) override {
    check_device(t, "start_all_reduce_sum");
    const cudaStream_t side = side_stream_after_compute();
    check_nccl(
        ncclAllReduce(t.raw(), t.raw(), t.numel(), nccl_type(t.dtype()), ncclSum, comm_, side),
        "ncclAllReduce");
    return pending(t, Tensor());
  }

  std::unique_ptr<PendingCollective> start_all_gather(const Tensor& in) override {
    check_device(in, "start_all_gather");
    Tensor out = gathered(in);  // allocated before the side stream waits on the device's
    const cudaStream_t side = side_stream_after_compute();
    check_nccl(ncclAllGather(in.raw(), out.raw(), in.numel(), nccl_type(in.dtype()), comm_, side),
               "ncclAllGather");
    return pending(out, in);
  }

  Tensor all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows) override {
    check_device(send, "all_to_all_v");
    check_all_to_all(*this, send, send_rows, recv_rows);
    const int64_t row = shape_numel(Shape(send.shape().begin() + 1, send.shape().end()));
    Shape shape = send.shape();
    shape[0] = 0;
    for (int64_t n : recv_rows) shape[0] += n;
    Tensor out = Tensor::empty(shape, send.dtype(), send.device());
    const size_t bytes = dtype_size(send.dtype());
    const char* s = static_cast<const char*>(send.raw());
    char* r = static_cast<char*>(out.raw());
    // One send and one receive per peer in a group: NCCL pairs them without deadlock.
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for (int peer = 0; peer < size_; ++peer) {
      const size_t out_count = send_rows[peer] * row, in_count = recv_rows[peer] * row;
      if (out_count)
        check_nccl(ncclSend(s, out_count, nccl_type(send.dtype()), peer, comm_, stream()),
                   "ncclSend");
      if (in_count)
        check_nccl(ncclRecv(r, in_count, nccl_type(send.dtype()), peer, comm_, stream()),
                   "ncclRecv");
      s += out_count * bytes;
      r += in_count * bytes;
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
    finish();
    return out;
  }

  void broadcast(Tensor& t, int root) override {
    check_device(t, "broadcast");
    SW_CHECK_ARG(root >= 0 && root < size_, "broadcast: root ", root, " is not in [0, ", size_,
                 ")");
    check_nccl(
        ncclBroadcast(t.raw(), t.raw(), t.numel(), nccl_type(t.dtype()), root, comm_, stream()),
        "ncclBroadcast");
    finish();
  }

  void barrier() override {
    Tensor one = Tensor::zeros({1}, DType::i32, Device::cuda(device_));
    all_reduce_sum(one);
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    SW_CHECK_ARG(color >= 0, "split: color must be >= 0, got ", color);
    ncclComm_t sub = nullptr;
    check_nccl(ncclCommSplit(comm_, color, key, &sub, nullptr), "ncclCommSplit");
    return std::make_unique<NcclCommunicator>(sub, device_);
  }

  [[noreturn]] void abort(int code) override {
    ncclCommAbort(comm_);
    std::_Exit(code);
  }

 private:
  cudaStream_t stream() const { return kernels::device_context(device_).stream; }
  // The side stream, made to wait for everything queued so far on the device's stream
  // (the tensors' last writes, and past uses of recycled blocks).
  cudaStream_t side_stream_after_compute() const {
    cudaEvent_t queued = nullptr;
    SW_CUDA_CHECK(cudaEventCreateWithFlags(&queued, cudaEventDisableTiming));
    SW_CUDA_CHECK(cudaEventRecord(queued, stream()));
    SW_CUDA_CHECK(cudaStreamWaitEvent(side_stream_, queued, 0));
    SW_CUDA_CHECK(cudaEventDestroy(queued));  // released once it has happened
    return side_stream_;
  }
  std::unique_ptr<PendingCollective> pending(Tensor result, Tensor input) const {
    cudaEvent_t done = nullptr;
    SW_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    SW_CUDA_CHECK(cudaEventRecord(done, side_stream_));
    return std::make_unique<NcclPending>(std::move(result), std::move(input), stream(), done);
  }
  Tensor gathered(const Tensor& in) const {
    Shape shape = in.shape();
    SW_CHECK_ARG(!shape.empty(), "all_gather: the tensor needs a row dimension");
    shape[0] *= size_;
    return Tensor::empty(shape, in.dtype(), in.device());
  }
  void finish() const { SW_CUDA_CHECK(cudaStreamSynchronize(stream())); }
  void check_device(const Tensor& t, const char* call) const {
    SW_CHECK_ARG(t.device() == Device::cuda(device_), call,
                 ": the NCCL backend moves tensors on cuda:", device_, ", got one on ",
                 t.device().str());
  }

  ncclComm_t comm_;
  int device_;
  cudaStream_t side_stream_ = nullptr;
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool nccl_built() { return true; }

std::unique_ptr<Communicator> nccl_communicator(Communicator& bootstrap, int device) {
  kernels::device_context(device);  // makes the device current
  ncclUniqueId id;
  static_assert(sizeof(ncclUniqueId) % sizeof(int32_t) == 0, "unique id size");
  Tensor bytes = Tensor::zeros({static_cast<int64_t>(sizeof id / sizeof(int32_t))}, DType::i32);
  if (bootstrap.rank() == 0) {
    check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    std::memcpy(bytes.raw(), &id, sizeof id);
  }
  bootstrap.broadcast(bytes, 0);
  std::memcpy(&id, bytes.raw(), sizeof id);
  ncclComm_t comm = nullptr;
  check_nccl(ncclCommInitRank(&comm, bootstrap.size(), id, bootstrap.rank()), "ncclCommInitRank");
  return std::make_unique<NcclCommunicator>(comm, device);
}

}  // namespace sw
