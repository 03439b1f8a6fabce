// The device switch of every op: the one header of core/ that knows whether the CUDA
// kernels are built (besides the allocator). An op's <op>.cc checks its arguments, then
//
//   if (on_cuda(x)) SW_RUN_ON_CUDA(kernels::rms_norm(x, weight, eps, inv_rms));
//   return cpu::rms_norm(x, weight, eps, inv_rms);
//
// and an op without a CUDA kernel yet says so through the same switch:
//
//   if (on_cuda(x)) no_kernel("rms_norm backward", x);
//
// Include it from .cc files of core/ only: SW_WITH_CUDA is defined for the core's own
// sources, so a header of the public API must not depend on it.
#pragma once

#include "core/tensor/error.h"
#include "core/tensor/tensor.h"

namespace sw {

// True for a tensor on a CUDA device (only possible in a build with CUDA).
inline bool on_cuda(const Tensor& t) { return t.device().kind == Device::Kind::cuda; }

// The error of an op that has no kernel for t's device yet: kUnsupported, naming both.
[[noreturn]] inline void no_kernel(const char* op, const Tensor& t) {
  throw Error(Status::kUnsupported, std::string(op) + ": no kernel for " + t.device().str() +
                                        " yet (tensor " + t.str() + ")");
}

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
