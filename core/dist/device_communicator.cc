#include "core/dist/device_communicator.h"

#include <unistd.h>

#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor/error.h"

namespace sw {
namespace {

// A staged collective: the host collective under way, and where its result goes back to.
class StagedPending final : public PendingCollective {
 public:
  // `into`: the device tensor the result is copied into (a sum in place), or undefined to
  // return a fresh copy on `device` (a gather).
  StagedPending(std::unique_ptr<PendingCollective> host, Tensor into, Device device)
      : host_(std::move(host)), into_(std::move(into)), device_(device) {}
  bool test() override { return host_->test(); }
  Tensor wait() override {
    if (!result_.defined()) {
      const Tensor on_host = host_->wait();
      if (into_.defined()) {
        into_.copy_from(on_host);
        result_ = into_;
      } else {
        result_ = on_host.to(device_);
      }
    }
    return result_;
  }

 private:
  std::unique_ptr<PendingCollective> host_;
  Tensor into_, result_;
  Device device_;
};

// Host tensors over `host_`; device tensors over `nccl_` or, when it is null, staged
// through host copies over `host_`.
class DeviceCommunicator final : public Communicator {
 public:
  DeviceCommunicator(std::unique_ptr<Communicator> host, std::unique_ptr<Communicator> nccl,
                     Device device)
      : host_(std::move(host)), nccl_(std::move(nccl)), device_(device) {}

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string backend() const override { return host_->backend() + (nccl_ ? "+nccl" : "+staged"); }

  bool moves(const Device& device) const override { return device.is_cpu() || device == device_; }

  void all_reduce_sum(Tensor& t) override {
    if (Communicator* c = direct(t, "all_reduce_sum")) return c->all_reduce_sum(t);
    Tensor staged = t.to(Device::cpu());
    host_->all_reduce_sum(staged);
    t.copy_from(staged);
  }
  Tensor all_gather(const Tensor& in) override {
    if (Communicator* c = direct(in, "all_gather")) return c->all_gather(in);
    return host_->all_gather(in.to(Device::cpu())).to(in.device());
  }
  std::unique_ptr<PendingCollective> start_all_reduce_sum(Tensor t) override {
    if (Communicator* c = direct(t, "start_all_reduce_sum")) return c->start_all_reduce_sum(t);
    return std::make_unique<StagedPending>(host_->start_all_reduce_sum(t.to(Device::cpu())), t,
                                           t.device());
  }
  std::unique_ptr<PendingCollective> start_all_gather(const Tensor& in) override {
    if (Communicator* c = direct(in, "start_all_gather")) return c->start_all_gather(in);
    return std::make_unique<StagedPending>(host_->start_all_gather(in.to(Device::cpu())), Tensor(),
                                           in.device());
  }
  Tensor all_to_all_v(const Tensor& send, const std::vector<int64_t>& send_rows,
                      const std::vector<int64_t>& recv_rows) override {
    if (Communicator* c = direct(send, "all_to_all_v"))
      return c->all_to_all_v(send, send_rows, recv_rows);
    return host_->all_to_all_v(send.to(Device::cpu()), send_rows, recv_rows).to(send.device());
  }
  void broadcast(Tensor& t, int root) override {
    if (Communicator* c = direct(t, "broadcast")) return c->broadcast(t, root);
    Tensor staged = t.to(Device::cpu());
    host_->broadcast(staged, root);
    t.copy_from(staged);
  }
  void barrier() override { host_->barrier(); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    std::unique_ptr<Communicator> host = host_->split(color, key);
    std::unique_ptr<Communicator> nccl = nccl_ ? nccl_->split(color, key) : nullptr;
    return std::make_unique<DeviceCommunicator>(std::move(host), std::move(nccl), device_);
  }
  [[noreturn]] void abort(int code) override {
    // The host launcher ends every rank; NCCL's kernels die with the processes.
    host_->abort(code);
    std::abort();  // not reached: the host abort ends the process
  }

 private:
  // The communicator that moves `t` as it is, or null when a device tensor is staged.
  Communicator* direct(const Tensor& t, const char* call) {
    if (t.device().is_cpu()) return host_.get();
    SW_CHECK_ARG(t.device() == device_, call, ": this rank's communicator moves tensors on ",
                 device_.str(), " or the cpu, got one on ", t.device().str());
    return nccl_.get();
  }

  std::unique_ptr<Communicator> host_, nccl_;
  Device device_;
};

}  // namespace

DeviceTransport parse_device_transport(const std::string& text) {
  if (text == "nccl") return DeviceTransport::kNccl;
  if (text == "staged") return DeviceTransport::kHostStaged;
  throw Error(Status::kInvalidArgument,
              "device transport \"" + text + "\": expected \"nccl\" or \"staged\"");
}

const char* device_transport_name(DeviceTransport transport) {
  return transport == DeviceTransport::kNccl ? "nccl" : "staged";
}

std::unique_ptr<Communicator> device_communicator(std::unique_ptr<Communicator> host, Device device,
                                                  DeviceTransport transport) {
  SW_CHECK_ARG(host != nullptr, "device_communicator: no host communicator");
  SW_CHECK_ARG(!device.is_cpu(), "device_communicator: ", device.str(),
               " is not a device (a cpu run uses its host communicator as it is)");
  require_device(device);
  std::unique_ptr<Communicator> nccl =
      transport == DeviceTransport::kNccl ? nccl_communicator(*host, device.index) : nullptr;
  return std::make_unique<DeviceCommunicator>(std::move(host), std::move(nccl), device);
}

LocalRank local_rank(Communicator& world) {
  char name[256] = {};
  SW_CHECK(gethostname(name, sizeof name - 1) == 0, Status::kIo, "local_rank: gethostname failed");
  const std::vector<std::string> hosts = all_gather_bytes(world, name);
  LocalRank local;
  local.size = 0;
  for (int r = 0; r < world.size(); ++r) {
    if (hosts[r] != name) continue;
    if (r < world.rank()) ++local.rank;
    ++local.size;
  }
  return local;
}

Device rank_device(const std::string& device, const LocalRank& local, int visible_gpus,
                   DeviceTransport transport) {
  SW_CHECK_ARG(local.size >= 1 && local.rank >= 0 && local.rank < local.size, "rank_device: local ",
               "rank ", local.rank, " of ", local.size);
  if (device != "cuda") {
    const Device given = Device::parse(device);
    SW_CHECK_ARG(given.is_cpu() || transport != DeviceTransport::kNccl || local.size == 1,
                 "device ", device, ": ", local.size, " ranks on this host would share ",
                 given.str(),
                 ", which NCCL refuses; use device \"cuda\" (one GPU per local rank) "
                 "or the staged transport");
    return given;
  }
  SW_CHECK(visible_gpus >= 1, Status::kUnsupported, "device cuda: no CUDA device is visible",
           cuda_built() ? "" : " (libswitch was built without CUDA)");
  // Where a launcher gives each rank its own CUDA_VISIBLE_DEVICES, a rank's GPU count says
  // nothing of its neighbours' GPUs; otherwise every local rank sees the same ones.
  const bool shared_view = std::getenv("CUDA_VISIBLE_DEVICES") == nullptr;
  SW_CHECK_ARG(transport != DeviceTransport::kNccl || !shared_view || local.size <= visible_gpus,
               "device cuda: ", local.size, " ranks on this host and ", visible_gpus,
               " GPUs: NCCL runs one rank per GPU; launch at most ", visible_gpus,
               " ranks per host or use the staged transport");
  return Device::cuda(local.rank % visible_gpus);
}

}  // namespace sw
