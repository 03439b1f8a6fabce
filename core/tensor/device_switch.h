// The device switch of every op: the one header of core/ that knows whether the CUDA
// kernels are built (besides the allocator). An op's <op>.cc checks its arguments, then
//
//   if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::rms_norm(x, weight, eps, inv_rms));
//   return cpu::rms_norm(x, weight, eps, inv_rms);
//
// Every op has a CUDA kernel; a variant a kernel does not cover (top-k routing, say) is
// refused before the switch with a kUnsupported error naming the op and the device.
//
// Include it from .cc files of core/ only: SW_WITH_CUDA is defined for the core's own
// sources, so a header of the public API must not depend on it.
#pragma once

#include "core/tensor/error.h"
#include "core/tensor/tensor.h"

namespace sw {

// True for a tensor on a CUDA device (only possible in a build with CUDA).
inline bool on_cuda(const Tensor& t) { return t.device().kind == Device::Kind::cuda; }

}  // namespace sw

#ifdef SW_WITH_CUDA
// Returns the CUDA kernel's result (kernels/<op>.cuh).
#define SW_RUN_ON_CUDA(...) return __VA_ARGS__
#else
// Unreachable: without CUDA no tensor lives on a GPU (the allocator refuses). The call is
// dropped, so a build without kernels/ links.
#define SW_RUN_ON_CUDA(...) \
  throw ::sw::Error(::sw::Status::kInternal, "a CUDA tensor in a build without CUDA")
#endif
