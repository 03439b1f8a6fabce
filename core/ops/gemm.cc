#include "core/ops/gemm.h"

#include "core/ops/activation.h"
#include "core/ops/checks.h"
#include "core/ops/storage.h"
#include "core/tensor/device_switch.h"
#include "kernels/expert_layout.cuh"
#include "kernels/gemm.cuh"

namespace sw::ops {
namespace {

struct GemmDims {
  int64_t m, k, n;
};

GemmDims gemm_dims(const Shape& a, bool ta, const Shape& b, bool tb, const char* op) {
  const int64_t m = ta ? a[1] : a[0], ka = ta ? a[0] : a[1];
  const int64_t kb = tb ? b[1] : b[0], n = tb ? b[0] : b[1];
  SW_CHECK_ARG(ka == kb, op, ": inner dimensions differ: ", shape_str(a), (ta ? "^T" : ""), " @ ",
               shape_str(b), (tb ? "^T" : ""));
  return {m, ka, n};
}

void check_group_offsets(const std::vector<int64_t>& offsets, int64_t groups, int64_t rows,
                         const char* op) {
  SW_CHECK_ARG(static_cast<int64_t>(offsets.size()) == groups + 1 && offsets.front() == 0 &&
                   offsets.back() == rows,
               op, ": offsets must run from 0 to ", rows, " in ", groups + 1, " entries");
  for (int64_t g = 0; g < groups; ++g)
    SW_CHECK_ARG(offsets[g] <= offsets[g + 1], op, ": offsets decrease at group ", g);
}

}  // namespace

void set_allow_tf32(bool allow) {
  SW_CHECK(!allow || cuda_built(), Status::kUnsupported,
           "TF32: libswitch was built without CUDA (TF32 is a GPU tensor-core mode)");
  if (cuda_built()) {
    SW_RUN_ON_CUDA(kernels::set_allow_tf32(allow));
  }
}

bool allow_tf32() {
  if (cuda_built()) {
    SW_RUN_ON_CUDA(kernels::allow_tf32());
  }
  return false;
}

void matmul(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, double alpha,
            double beta) {
  SW_CHECK_ARG(a.ndim() == 2 && b.ndim() == 2 && c.ndim() == 2,
               "matmul: expected 2-D tensors, got ", a.str(), ", ", b.str(), ", ", c.str());
  SW_CHECK_ARG(a.dtype() == b.dtype() && gradient_dtype_ok(c, a),
               "matmul: dtypes differ: ", a.str(), ", ", b.str(), ", ", c.str(),
               " (the output may be f32 for bf16 inputs on a GPU only)");
  const GemmDims d = gemm_dims(a.shape(), ta, b.shape(), tb, "matmul");
  check_shape(c, {d.m, d.n}, "matmul: output");
  check_same_device({&c, &a, &b}, "matmul");
  if (on_cuda(c)) SW_RUN_ON_CUDA(kernels::matmul(a, ta, b, tb, c, alpha, beta));
  cpu::matmul(a, ta, b, tb, c, alpha, beta);
  stored(c);
}

Tensor matmul(const Tensor& a, bool ta, const Tensor& b, bool tb) {
  SW_CHECK_ARG(a.ndim() == 2 && b.ndim() == 2, "matmul: expected 2-D tensors, got ", a.str(), ", ",
               b.str());
  const GemmDims d = gemm_dims(a.shape(), ta, b.shape(), tb, "matmul");
  Tensor c = Tensor::empty({d.m, d.n}, a.dtype(), a.device());
  matmul(a, ta, b, tb, c);
  return c;
}

Tensor linear(const Tensor& x, const Tensor& w) {
  SW_CHECK_ARG(w.ndim() == 2 && x.ndim() >= 1, "linear: expected x [..., in] and w [out, in], got ",
               x.str(), ", ", w.str());
  SW_CHECK_ARG(x.dim(-1) == w.dim(1), "linear: input has ", x.dim(-1), " features, weight ",
               shape_str(w.shape()), " expects ", w.dim(1));
  Shape out_shape = x.shape();
  out_shape.back() = w.dim(0);
  Tensor y = matmul(x.view({leading_rows(x), x.dim(-1)}), false, w, true);
  return y.view(out_shape);
}

Tensor linear_backward_input(const Tensor& dy, const Tensor& w) {
  SW_CHECK_ARG(w.ndim() == 2 && dy.ndim() >= 1 && dy.dim(-1) == w.dim(0), "linear backward: dy ",
               dy.str(), " does not match weight ", w.str());
  Shape shape = dy.shape();
  shape.back() = w.dim(1);
  return matmul(dy.view({leading_rows(dy), dy.dim(-1)}), false, w, false).view(shape);
}

void linear_backward_weight(const Tensor& dy, const Tensor& x, Tensor& dw, bool accumulate) {
  SW_CHECK_ARG(dw.ndim() == 2 && dy.dim(-1) == dw.dim(0) && x.dim(-1) == dw.dim(1) &&
                   leading_rows(dy) == leading_rows(x),
               "linear backward: dy ", dy.str(), ", x ", x.str(), " and dw ", dw.str(),
               " do not match");
  // Weight gradients accumulate in f32 under bf16 storage too (as f32 master gradients).
  const Bf16Storage f32_gradient(false);
  matmul(dy.view({leading_rows(dy), dy.dim(-1)}), true, x.view({leading_rows(x), x.dim(-1)}), false,
         dw, 1.0, accumulate ? 1.0 : 0.0);
}

namespace {

void check_batched(const Tensor& a, bool ta, const Tensor& b, bool tb, const Tensor& c,
                   const char* op) {
  SW_CHECK_ARG(a.ndim() == 3 && b.ndim() == 3 && c.ndim() == 3, op, ": expected 3-D tensors, got ",
               a.str(), ", ", b.str(), ", ", c.str());
  SW_CHECK_ARG(a.dtype() == b.dtype() && b.dtype() == c.dtype(), op, ": dtypes differ");
  const int64_t batch = a.dim(0);
  SW_CHECK_ARG(b.dim(0) == batch && c.dim(0) == batch, op, ": batch sizes differ: ", a.str(), ", ",
               b.str(), ", ", c.str());
  const GemmDims d = gemm_dims({a.dim(1), a.dim(2)}, ta, {b.dim(1), b.dim(2)}, tb, op);
  check_shape(c, {batch, d.m, d.n}, (std::string(op) + ": output").c_str());
  check_same_device({&c, &a, &b}, op);
}

void check_activation(Epilogue act, const char* op) {
  SW_CHECK_ARG(act == Epilogue::kRelu || act == Epilogue::kGelu, op,
               ": the activation must be kRelu or kGelu");
}

// The bf16 GPU path of the two below: one cuBLASLt call, false where it does not apply.
bool fused_activation([[maybe_unused]] const Tensor& a, [[maybe_unused]] bool ta,
                      [[maybe_unused]] const Tensor& b, [[maybe_unused]] bool tb,
                      [[maybe_unused]] Tensor& c, [[maybe_unused]] ActivationSaved& saved) {
  SW_RUN_ON_CUDA(kernels::batched_matmul_activation(a, ta, b, tb, c, saved));
}
bool fused_activation_backward([[maybe_unused]] const Tensor& a, [[maybe_unused]] bool ta,
                               [[maybe_unused]] const Tensor& b, [[maybe_unused]] bool tb,
                               [[maybe_unused]] Tensor& c,
                               [[maybe_unused]] const ActivationSaved& saved) {
  SW_RUN_ON_CUDA(kernels::batched_matmul_activation_backward(a, ta, b, tb, c, saved));
}

}  // namespace

void batched_matmul(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c,
                    Epilogue epilogue) {
  check_batched(a, ta, b, tb, c, "batched_matmul");
  if (on_cuda(c)) SW_RUN_ON_CUDA(kernels::batched_matmul(a, ta, b, tb, c, epilogue));
  cpu::batched_matmul(a, ta, b, tb, c, epilogue);
  stored(c);
}

bool batched_matmul_activation(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c,
                               Epilogue act, ActivationSaved& saved) {
  check_activation(act, "batched_matmul_activation");
  check_batched(a, ta, b, tb, c, "batched_matmul_activation");
  saved = ActivationSaved{};
  saved.activation = act;
  if (on_cuda(c) && fused_activation(a, ta, b, tb, c, saved)) return true;
  // The GEMM, then the activation (the cpu, f32 on a GPU, or no cuBLASLt algorithm).
  if (act == Epilogue::kRelu) {
    batched_matmul(a, ta, b, tb, c, Epilogue::kRelu);
    saved.pre_activation = c;
    return false;
  }
  batched_matmul(a, ta, b, tb, c);
  saved.pre_activation = c.clone();
  c.copy_from(gelu(saved.pre_activation));
  return false;
}

bool batched_matmul_activation_backward(const Tensor& a, bool ta, const Tensor& b, bool tb,
                                        Tensor& c, const ActivationSaved& saved) {
  check_activation(saved.activation, "batched_matmul_activation_backward");
  check_batched(a, ta, b, tb, c, "batched_matmul_activation_backward");
  check_shape(saved.pre_activation, c.shape(),
              "batched_matmul_activation_backward: the forward's pre-activation");
  check_same_device({&c, &saved.pre_activation}, "batched_matmul_activation_backward");
  if (on_cuda(c) && fused_activation_backward(a, ta, b, tb, c, saved)) return true;
  batched_matmul(a, ta, b, tb, c);
  c.copy_from(saved.activation == Epilogue::kRelu ? relu_backward(c, saved.pre_activation)
                                                  : gelu_backward(c, saved.pre_activation));
  return false;
}

void grouped_matmul(const Tensor& a, const Tensor& b, bool tb, Tensor& c,
                    const std::vector<int64_t>& offsets) {
  SW_CHECK_ARG(a.ndim() == 2 && b.ndim() == 3 && c.ndim() == 2,
               "grouped_matmul: expected a [R, k], b [G, ., .], c [R, n], got ", a.str(), ", ",
               b.str(), ", ", c.str());
  SW_CHECK_ARG(a.dtype() == b.dtype() && b.dtype() == c.dtype(), "grouped_matmul: dtypes differ");
  const int64_t groups = b.dim(0), rows = a.dim(0);
  check_group_offsets(offsets, groups, rows, "grouped_matmul");
  const GemmDims d = gemm_dims({rows, a.dim(1)}, false, {b.dim(1), b.dim(2)}, tb, "grouped_matmul");
  check_shape(c, {rows, d.n}, "grouped_matmul: output");
  check_same_device({&c, &a, &b}, "grouped_matmul");
  if (on_cuda(c)) SW_RUN_ON_CUDA(kernels::grouped_matmul(a, b, tb, c, offsets));
  cpu::grouped_matmul(a, b, tb, c, offsets);
  stored(c);
}

ExpertLayout choose_expert_layout(const Tensor& weight, [[maybe_unused]] bool transpose_weight,
                                  const std::vector<int64_t>& kept_per_expert,
                                  bool padded_allowed) {
  SW_CHECK_ARG(!kept_per_expert.empty(), "choose_expert_layout: no experts");
  SW_CHECK_ARG(weight.ndim() == 3 && weight.dim(0) == static_cast<int64_t>(kept_per_expert.size()),
               "choose_expert_layout: expected a weight [E, ., .] for ", kept_per_expert.size(),
               " experts, got ", weight.str());
  for (int64_t kept : kept_per_expert)
    SW_CHECK_ARG(kept >= 0, "choose_expert_layout: an expert keeps ", kept, " rows");
  if (on_cuda(weight)) {
    if (weight.dtype() != DType::bf16)  // the parity mode: the same layout in every process
      return padded_allowed ? ExpertLayout::kPadded : ExpertLayout::kPerExpert;
    SW_RUN_ON_CUDA(
        kernels::choose_expert_layout(weight, transpose_weight, kept_per_expert, padded_allowed));
  }
  return ExpertLayout::kPerExpert;  // the cpu's grouped GEMM
}

std::vector<ExpertLayoutMeasurement> expert_layout_table() {
  if (cuda_built()) {
    SW_RUN_ON_CUDA(kernels::expert_layout_table());
  }
  return {};
}

void grouped_weight_gradient(const Tensor& dy, const Tensor& x, const std::vector<int64_t>& offsets,
                             Tensor& dw) {
  SW_CHECK_ARG(dy.ndim() == 2 && x.ndim() == 2 && dw.ndim() == 3 && dy.dim(0) == x.dim(0) &&
                   dw.dim(1) == dy.dim(1) && dw.dim(2) == x.dim(1),
               "grouped_weight_gradient: expected dy [R, n], x [R, k], dw [G, n, k], got ",
               dy.str(), ", ", x.str(), ", ", dw.str());
  SW_CHECK_ARG(dy.dtype() == x.dtype(), "grouped_weight_gradient: dtypes differ: dy ", dy.str(),
               ", x ", x.str());
  check_gradient_dtype(dw, x, "grouped_weight_gradient");
  const int64_t groups = dw.dim(0);
  check_group_offsets(offsets, groups, x.dim(0), "grouped_weight_gradient");
  check_same_device({&dw, &dy, &x}, "grouped_weight_gradient");
  if (on_cuda(dw)) SW_RUN_ON_CUDA(kernels::grouped_weight_gradient(dy, x, offsets, dw));
  cpu::grouped_weight_gradient(dy, x, offsets, dw);
}

}  // namespace sw::ops
