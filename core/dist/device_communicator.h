// Communicators for ranks that train on GPUs, and how a launched rank finds its GPU.
//
// A device run's tensors live in two places: parameters, activations and gradients on
// the rank's GPU, and small bookkeeping (token counts, exchange plans, metrics, checkpoint
// bytes) on the host. device_communicator() routes each collective by where its tensor
// lives: host tensors over the host (MPI) communicator, device tensors over NCCL or, with
// the host-staged transport, copied to the host, moved over MPI and copied back. Staging
// is slower but lets several ranks share one GPU (NCCL refuses two ranks on one device),
// which is how the multi-rank GPU tests run on one machine, and it runs where NCCL is not
// installed.
#pragma once

#include <memory>
#include <string>

#include "core/dist/communicator.h"
#include "core/tensor/dtype.h"

namespace sw {

enum class DeviceTransport {
  kNccl,        // device tensors over NCCL on the rank's GPU
  kHostStaged,  // device -> host, MPI, host -> device
};

// "nccl" or "staged"; anything else is a kInvalidArgument naming the nearest value.
DeviceTransport parse_device_transport(const std::string& text);
const char* device_transport_name(DeviceTransport transport);

// A communicator over the ranks of `host` for a rank whose device tensors live on
// `device` (a CUDA device): collective by collective, host tensors over `host`, device
// tensors by `transport`. Collective over `host` (NCCL's bootstrap). Its split() splits
// both halves, so sub-groups keep the routing.
std::unique_ptr<Communicator> device_communicator(std::unique_ptr<Communicator> host, Device device,
                                                  DeviceTransport transport);

// This rank's index among the ranks of `world` on the same host (by host name), and how
// many there are: what picks a GPU per rank under any launcher (mpirun, srun, mpiexec).
// Collective.
struct LocalRank {
  int rank = 0, size = 1;
};
LocalRank local_rank(Communicator& world);

// The device a launched rank trains on: "cuda" means the GPU of the local rank's index
// modulo the visible GPUs (ranks share a GPU only when there are more local ranks than
// GPUs); "cuda:N" and "cpu" are taken as given. NCCL cannot run two ranks of one
// communicator on one GPU: a layout that would (known when CUDA_VISIBLE_DEVICES is unset,
// every local rank seeing the same GPUs) is a kInvalidArgument that says to use the
// staged transport or fewer ranks per host.
Device rank_device(const std::string& device, const LocalRank& local, int visible_gpus,
                   DeviceTransport transport);

}  // namespace sw
