#include "core/ops/dispatch.h"

#include "core/ops/checks.h"
#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/dispatch.cuh"

namespace sw::ops {
namespace {

// The assignment describes n tokens whose rows lie in the dispatched buffer.
void check_rows(const CapacityAssignment& a, int64_t n, const char* op) {
  SW_CHECK_ARG(
      a.row.defined() && a.row.ndim() == 2 && a.row.dim(0) == n && !a.expert_offset.empty(), op,
      ": ", n, " tokens, but an assignment of rows ", a.row.defined() ? a.row.str() : "(none)");
  if (!a.row.device().is_cpu()) return;  // made on the device by assign_capacity
  const int32_t* row = a.row.data<int32_t>();
  for (int64_t i = 0; i < a.row.numel(); ++i)
    SW_CHECK(row[i] >= -1 && row[i] < a.kept(), Status::kOutOfRange, op, ": row ", row[i],
             " of token ", i / a.row.dim(1), " is outside the ", a.kept(), " dispatched rows");
}

// The tokens an assignment describes (0 for an empty one; check_rows refuses it).
int64_t tokens_of(const CapacityAssignment& a) { return a.row.defined() ? a.row.dim(0) : 0; }

// The GPU kernels take one expert per token.
void check_top1_on_gpu(const CapacityAssignment& a, const char* op) {
  SW_CHECK(a.row.dim(1) == 1, Status::kUnsupported, op,
           ": the GPU kernel takes one expert per token, got rows ", a.row.str());
}

void check_expert_rows(const Tensor& expert_out, const CapacityAssignment& a, const char* op) {
  SW_CHECK_ARG(expert_out.ndim() == 2 && expert_out.dim(0) == a.kept(), op, ": expert rows ",
               expert_out.str(), " do not hold the ", a.kept(), " kept tokens");
}

}  // namespace

Tensor dispatch(const Tensor& x, const CapacityAssignment& a) {
  SW_CHECK_ARG(x.ndim() == 2, "dispatch: x must be [N, d], got ", x.str());
  check_rows(a, x.dim(0), "dispatch");
  check_same_device({&x, &a.row}, "dispatch");
  if (on_cuda(x)) {
    check_top1_on_gpu(a, "dispatch");
    SW_RUN_ON_CUDA(kernels::dispatch(x, a.row, a.kept()));
  }
  return stored(cpu::dispatch(x, a));
}

Tensor combine(const Tensor& expert_out, const Tensor& gate, const CapacityAssignment& a) {
  check_rows(a, tokens_of(a), "combine");
  check_expert_rows(expert_out, a, "combine");
  check_shape(gate, a.row.shape(), "combine: gate");
  check_same_device({&expert_out, &gate, &a.row}, "combine");
  if (on_cuda(expert_out)) {
    check_top1_on_gpu(a, "combine");
    SW_RUN_ON_CUDA(kernels::combine(expert_out, a.row, gate));
  }
  check_dtype(gate, expert_out.dtype(), "combine: gate");
  return stored(cpu::combine(expert_out, gate, a));
}

Tensor dispatch_backward(const Tensor& d_buffer, const CapacityAssignment& a) {
  check_rows(a, tokens_of(a), "dispatch backward");
  check_expert_rows(d_buffer, a, "dispatch backward");
  check_same_device({&d_buffer, &a.row}, "dispatch backward");
  if (on_cuda(d_buffer)) {
    check_top1_on_gpu(a, "dispatch backward");
    SW_RUN_ON_CUDA(kernels::dispatch_backward(d_buffer, a.row));
  }
  return stored(cpu::dispatch_backward(d_buffer, a));
}

void combine_backward(const Tensor& dy, const Tensor& expert_out, const Tensor& gate,
                      const CapacityAssignment& a, Tensor& d_expert_out, Tensor& d_gate) {
  const int64_t n = tokens_of(a);
  check_rows(a, n, "combine backward");
  check_expert_rows(expert_out, a, "combine backward");
  check_shape(dy, {n, expert_out.dim(1)}, "combine backward: dy");
  check_shape(gate, a.row.shape(), "combine backward: gate");
  check_same_device({&dy, &expert_out, &gate, &a.row}, "combine backward");
  if (on_cuda(dy)) {
    check_top1_on_gpu(a, "combine backward");
    SW_RUN_ON_CUDA(kernels::combine_backward(dy, expert_out, a.row, gate, d_expert_out, d_gate));
  }
  check_dtype(gate, expert_out.dtype(), "combine backward: gate");
  check_dtype(dy, expert_out.dtype(), "combine backward: dy");
  cpu::combine_backward(dy, expert_out, gate, a, d_expert_out, d_gate);
  stored(d_expert_out);  // d_gate goes to the router, whose precision is its own
}

}  // namespace sw::ops
