// The NCCL backend: device tensors, one NCCL communicator per process on its CUDA device,
// bootstrapped over a host communicator (rank 0 makes the unique id and broadcasts it).
// Collectives run on the device's stream (kernels/device_context.h) and are complete when
// they return, like the MPI backend's. Every failure names the call and NCCL's message.
#include <nccl.h>

#include <cstring>
#include <exception>
#include <string>

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

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int device) : comm_(comm), device_(device) {
    check_nccl(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
    check_nccl(ncclCommCount(comm_, &size_), "ncclCommCount");
  }
  // Unwinding from an error, the other ranks may be blocked in a collective that
  // ncclCommDestroy would wait on: the communicator is left to the process's end (the
  // caller aborts every rank).
  ~NcclCommunicator() override {
    if (std::uncaught_exceptions() == 0) ncclCommDestroy(comm_);
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
    Shape shape = in.shape();
    SW_CHECK_ARG(!shape.empty(), "all_gather: the tensor needs a row dimension");
    shape[0] *= size_;
    Tensor out = Tensor::empty(shape, in.dtype(), in.device());
    check_nccl(
        ncclAllGather(in.raw(), out.raw(), in.numel(), nccl_type(in.dtype()), comm_, stream()),
        "ncclAllGather");
    finish();
    return out;
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
  void finish() const { SW_CUDA_CHECK(cudaStreamSynchronize(stream())); }
  void check_device(const Tensor& t, const char* call) const {
    SW_CHECK_ARG(t.device() == Device::cuda(device_), call,
                 ": the NCCL backend moves tensors on cuda:", device_, ", got one on ",
                 t.device().str());
  }

  ncclComm_t comm_;
  int device_;
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
