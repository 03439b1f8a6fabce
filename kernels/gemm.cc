#include "kernels/gemm.cuh"

#include <atomic>
#include <climits>

#include "kernels/activation.cuh"
#include "kernels/convert.cuh"
#include "kernels/device.cuh"
#include "kernels/device_context.h"
#include "kernels/expert_layout.cuh"

namespace sw::kernels {
namespace {

struct GemmTypes {
  cudaDataType_t data;
  cublasComputeType_t compute;
  bool scalars_f64;
};

std::atomic<bool> tf32_allowed{false};

GemmTypes gemm_types(DType t, const char* op) {
  switch (t) {
    case DType::f32:
      return {CUDA_R_32F, f32_compute_type(), false};
    case DType::bf16:
      return {CUDA_R_16BF, CUBLAS_COMPUTE_32F, false};
    case DType::f64:
      return {CUDA_R_64F, CUBLAS_COMPUTE_64F, true};
    default:
      throw Error(Status::kUnsupported, std::string(op) + ": dtype " + dtype_name(t) +
                                            " is not supported on cuda (f32, bf16, f64)");
  }
}

int checked_int(int64_t v, const char* what) {
  SW_CHECK(v >= 0 && v <= INT_MAX, Status::kUnsupported, what, " = ", v,
           " exceeds cuBLAS's 32-bit dimensions");
  return static_cast<int>(v);
}

// Row-major C[m, n] = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS gets B
// first. Leading dimensions are the row lengths of the stored matrices.
struct RowMajorGemm {
  cublasOperation_t op_b, op_a;
  int n, m, k, ldb, lda, ldc;
  RowMajorGemm(int64_t m_, int64_t n_, int64_t k_, bool ta, bool tb)
      : op_b(tb ? CUBLAS_OP_T : CUBLAS_OP_N),
        op_a(ta ? CUBLAS_OP_T : CUBLAS_OP_N),
        n(checked_int(n_, "n")),
        m(checked_int(m_, "m")),
        k(checked_int(k_, "k")),
        ldb(checked_int(tb ? k_ : n_, "ldb")),
        lda(checked_int(ta ? m_ : k_, "lda")),
        ldc(checked_int(n_, "ldc")) {}
};

void check_same_device(const Tensor& a, const Tensor& b, const Tensor& c, const char* op) {
  SW_CHECK_ARG(a.device() == b.device() && b.device() == c.device(), op, ": tensors on ",
               a.device().str(), ", ", b.device().str(), ", ", c.device().str());
}

}  // namespace

void set_allow_tf32(bool allow) { tf32_allowed = allow; }
bool allow_tf32() { return tf32_allowed; }
cublasComputeType_t f32_compute_type() {
  return tf32_allowed ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC;
}

void matmul(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c, double alpha,
            double beta) {
  check_same_device(a, b, c, "matmul");
  const int64_t m = c.dim(0), n = c.dim(1), k = ta ? a.dim(0) : a.dim(1);
  if (m == 0 || n == 0) return;
  DeviceContext& ctx = device_context(c);
  // bf16 inputs may write an f32 output (bf16 training's f32 weight gradients): the
  // tensor cores' products are summed in f32 either way, so only the final store differs.
  const GemmTypes t = gemm_types(c.dtype(), "matmul");
  const cudaDataType_t inputs = gemm_types(a.dtype(), "matmul").data;
  const RowMajorGemm g(m, n, k, ta, tb);
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  const void* pa = t.scalars_f64 ? static_cast<const void*>(&alpha) : &alpha_f;
  const void* pb = t.scalars_f64 ? static_cast<const void*>(&beta) : &beta_f;
  SW_CUBLAS_CHECK(cublasGemmEx(ctx.cublas, g.op_b, g.op_a, g.n, g.m, g.k, pa, b.raw(), inputs,
                               g.ldb, a.raw(), inputs, g.lda, pb, c.raw(), t.data, g.ldc,
                               inputs == CUDA_R_16BF ? CUBLAS_COMPUTE_32F : t.compute,
                               CUBLAS_GEMM_DEFAULT));
}

void matmul_bf16_by_f32(const Tensor& x, const Tensor& w, Tensor& logits) {
  check_dtype(x, DType::bf16, "matmul_bf16_by_f32: x");
  check_dtype(w, DType::f32, "matmul_bf16_by_f32: w");
  check_dtype(logits, DType::f32, "matmul_bf16_by_f32: output");
  check_same_device(x, w, logits, "matmul_bf16_by_f32");
  const int64_t n = x.dim(0), d = x.dim(1), e = w.dim(0);
  if (n == 0 || e == 0) return;
  DeviceContext& ctx = device_context(logits);
  Tensor parts[3] = {Tensor::empty(w.shape(), DType::bf16, w.device()),
                     Tensor::empty(w.shape(), DType::bf16, w.device()),
                     Tensor::empty(w.shape(), DType::bf16, w.device())};
  split_bf16x3(w, parts[0], parts[1], parts[2]);
  const RowMajorGemm g(n, e, d, false, true);
  const float one = 1.0f;
  // Smallest part first, so the large terms add last.
  for (int i = 2; i >= 0; --i) {
    const float beta = i == 2 ? 0.0f : 1.0f;
    SW_CUBLAS_CHECK(cublasGemmEx(ctx.cublas, g.op_b, g.op_a, g.n, g.m, g.k, &one, parts[i].raw(),
                                 CUDA_R_16BF, g.ldb, x.raw(), CUDA_R_16BF, g.lda, &beta,
                                 logits.raw(), CUDA_R_32F, g.ldc, CUBLAS_COMPUTE_32F,
                                 CUBLAS_GEMM_DEFAULT));
  }
}

namespace {

// cuBLASLt's descriptors, destroyed with the call that made them.
struct LtDescriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t first = nullptr, second = nullptr, out = nullptr;
  cublasLtMatmulPreference_t preference = nullptr;
  ~LtDescriptors() {
    if (preference) cublasLtMatmulPreferenceDestroy(preference);
    for (cublasLtMatrixLayout_t l : {first, second, out})
      if (l) cublasLtMatrixLayoutDestroy(l);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// A column-major rows x cols matrix, `batch` of them `stride` elements apart.
cublasStatus_t strided_layout(cublasLtMatrixLayout_t* layout, cudaDataType_t type, int64_t rows,
                              int64_t cols, int ld, int32_t batch, int64_t stride) {
  cublasStatus_t s = cublasLtMatrixLayoutCreate(layout, type, static_cast<uint64_t>(rows),
                                                static_cast<uint64_t>(cols), ld);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatrixLayoutSetAttribute(*layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                         sizeof(batch));
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatrixLayoutSetAttribute(*layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                         &stride, sizeof(stride));
  return s;
}

// What a cuBLASLt epilogue writes or reads beside C: ReLU's sign bits or GELU's
// pre-activation, laid out like C^T (column-major, `ld` and `stride` counted as cuBLASLt
// counts them: bits for the mask, elements for the pre-activation).
struct LtAux {
  void* data = nullptr;
  int64_t ld = 0, stride = 0;
};

// The ReLU mask's leading dimension in bits for rows of n columns: cuBLASLt wants a
// multiple of 128.
int64_t relu_mask_ld(int64_t n) { return (n + 127) / 128 * 128; }

// c[i] = epilogue(op(a[i]) op(b[i])) in one bf16 cuBLASLt call, the epilogue applied as
// each tile is stored. False where cuBLASLt offers no algorithm for it (or refuses the
// launch, an operand's alignment say): nothing was written, and the caller runs the GEMM
// and the activation apart.
bool batched_matmul_lt(DeviceContext& ctx, const Tensor& a, bool ta, const Tensor& b, bool tb,
                       Tensor& c, cublasLtEpilogue_t epilogue, const LtAux& aux = {}) {
  const int64_t batch = c.dim(0), m = c.dim(1), n = c.dim(2), k = ta ? a.dim(1) : a.dim(2);
  const RowMajorGemm g(m, n, k, ta, tb);
  const int32_t count = static_cast<int32_t>(checked_int(batch, "batch"));
  LtDescriptors d;
  const uint64_t workspace = ctx.cublas_workspace_bytes;
  auto set = [&](cublasLtMatmulDescAttributes_t attribute, const auto& value) {
    return cublasLtMatmulDescSetAttribute(d.op, attribute, &value, sizeof(value)) ==
           CUBLAS_STATUS_SUCCESS;
  };
  bool ok =
      cublasLtMatmulDescCreate(&d.op, CUBLAS_COMPUTE_32F, CUDA_R_32F) == CUBLAS_STATUS_SUCCESS &&
      set(CUBLASLT_MATMUL_DESC_TRANSA, g.op_b) && set(CUBLASLT_MATMUL_DESC_TRANSB, g.op_a) &&
      set(CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
  if (aux.data)
    ok = ok && set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux.data) &&
         set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, aux.ld) &&
         set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE, aux.stride);
  // Row-major C = op(A) op(B) as column-major C^T = op(B)^T op(A)^T (RowMajorGemm).
  const bool b_plain = g.op_b == CUBLAS_OP_N, a_plain = g.op_a == CUBLAS_OP_N;
  ok = ok &&
       strided_layout(&d.first, CUDA_R_16BF, b_plain ? n : k, b_plain ? k : n, g.ldb, count,
                      k * n) == CUBLAS_STATUS_SUCCESS &&
       strided_layout(&d.second, CUDA_R_16BF, a_plain ? k : m, a_plain ? m : k, g.lda, count,
                      m * k) == CUBLAS_STATUS_SUCCESS &&
       strided_layout(&d.out, CUDA_R_16BF, n, m, g.ldc, count, m * n) == CUBLAS_STATUS_SUCCESS &&
       cublasLtMatmulPreferenceCreate(&d.preference) == CUBLAS_STATUS_SUCCESS &&
       cublasLtMatmulPreferenceSetAttribute(d.preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                            &workspace, sizeof(workspace)) == CUBLAS_STATUS_SUCCESS;
  // The heuristic assumes 256-byte aligned operands unless told otherwise: the operands'
  // own alignment (address, row length and batch stride), so that an odd shape gets an
  // algorithm it can run instead of a launch that fails.
  auto alignment = [](const void* p, int64_t ld, int64_t stride) {
    const uint64_t v = reinterpret_cast<uintptr_t>(p) | static_cast<uint64_t>(ld * 2) |
                       static_cast<uint64_t>(stride * 2) | 256;  // bf16: 2 bytes
    return static_cast<uint32_t>(v & (~v + 1));                  // its lowest set bit
  };
  const uint32_t aligned[] = {alignment(b.raw(), g.ldb, k * n), alignment(a.raw(), g.lda, m * k),
                              alignment(c.raw(), g.ldc, m * n)};
  const cublasLtMatmulPreferenceAttributes_t prefs[] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4 && ok; ++i)
    ok = cublasLtMatmulPreferenceSetAttribute(d.preference, prefs[i], &aligned[i < 2 ? i : 2],
                                              sizeof(uint32_t)) == CUBLAS_STATUS_SUCCESS;
  cublasLtMatmulHeuristicResult_t algo{};
  int found = 0;
  ok = ok &&
       cublasLtMatmulAlgoGetHeuristic(ctx.cublas_lt, d.op, d.first, d.second, d.out, d.out,
                                      d.preference, 1, &algo, &found) == CUBLAS_STATUS_SUCCESS &&
       found > 0;
  if (!ok) return false;
  const float one = 1.0f, zero = 0.0f;
  return cublasLtMatmul(ctx.cublas_lt, d.op, &one, b.raw(), d.first, a.raw(), d.second, &zero,
                        c.raw(), d.out, c.raw(), d.out, &algo.algo, ctx.cublas_workspace,
                        ctx.cublas_workspace_bytes, ctx.stream) == CUBLAS_STATUS_SUCCESS;
}

// c[i] = op(a[i]) op(b[i]) + beta c[i] for 3-D row-major tensors, one cuBLAS call; bf16
// inputs may write an f32 c (as matmul).
void strided_batched_gemm(DeviceContext& ctx, const Tensor& a, bool ta, const Tensor& b, bool tb,
                          Tensor& c, double beta) {
  const int64_t batch = c.dim(0), m = c.dim(1), n = c.dim(2), k = ta ? a.dim(1) : a.dim(2);
  const GemmTypes t = gemm_types(c.dtype(), "batched_matmul");
  const cudaDataType_t inputs = gemm_types(a.dtype(), "batched_matmul").data;
  const RowMajorGemm g(m, n, k, ta, tb);
  const double one = 1.0;
  const float one_f = 1.0f, beta_f = static_cast<float>(beta);
  SW_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      ctx.cublas, g.op_b, g.op_a, g.n, g.m, g.k,
      t.scalars_f64 ? static_cast<const void*>(&one) : &one_f, b.raw(), inputs, g.ldb, k * n,
      a.raw(), inputs, g.lda, m * k, t.scalars_f64 ? static_cast<const void*>(&beta) : &beta_f,
      c.raw(), t.data, g.ldc, m * n, checked_int(batch, "batch"),
      inputs == CUDA_R_16BF ? CUBLAS_COMPUTE_32F : t.compute, CUBLAS_GEMM_DEFAULT));
}

// The rows per group when every group has the same number, none empty (the padded
// layout's offsets), else 0.
int64_t equal_group_rows(const std::vector<int64_t>& offsets) {
  if (offsets.size() < 2 || offsets[1] == offsets[0]) return 0;
  const int64_t rows = offsets[1] - offsets[0];
  for (size_t g = 1; g + 1 < offsets.size(); ++g)
    if (offsets[g + 1] - offsets[g] != rows) return 0;
  return rows;
}

}  // namespace

void batched_matmul(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c,
                    ops::Epilogue epilogue) {
  check_same_device(a, b, c, "batched_matmul");
  const int64_t batch = c.dim(0), m = c.dim(1), n = c.dim(2);
  if (batch == 0 || m == 0 || n == 0) return;
  DeviceContext& ctx = device_context(c);
  if (epilogue != ops::Epilogue::kNone) {
    // bf16 (the speed path) fuses it; f32 (the parity path) keeps cuBLAS's GEMM bits.
    const cublasLtEpilogue_t fused =
        epilogue == ops::Epilogue::kRelu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_GELU;
    if (c.dtype() == DType::bf16 && batched_matmul_lt(ctx, a, ta, b, tb, c, fused)) return;
    strided_batched_gemm(ctx, a, ta, b, tb, c, 0.0);
    if (epilogue == ops::Epilogue::kRelu)
      relu_(c);
    else
      c.copy_from(gelu(c));
    return;
  }
  strided_batched_gemm(ctx, a, ta, b, tb, c, 0.0);
}

bool batched_matmul_activation(const Tensor& a, bool ta, const Tensor& b, bool tb, Tensor& c,
                               ops::ActivationSaved& saved) {
  check_same_device(a, b, c, "batched_matmul_activation");
  const int64_t batch = c.dim(0), m = c.dim(1), n = c.dim(2);
  if (c.dtype() != DType::bf16 || batch == 0 || m == 0 || n == 0) return false;
  DeviceContext& ctx = device_context(c);
  if (saved.activation == ops::Epilogue::kRelu) {
    const int64_t ld = relu_mask_ld(n);
    Tensor mask = Tensor::empty({batch * m * ld / 32}, DType::i32, c.device());
    if (!batched_matmul_lt(ctx, a, ta, b, tb, c, CUBLASLT_EPILOGUE_RELU_AUX,
                           {mask.raw(), ld, ld * m}))
      return false;
    saved.relu_mask = mask;
    saved.pre_activation = c;
    return true;
  }
  if (n % 8 != 0) return false;  // cuBLASLt's GELU input needs rows of 8 elements
  Tensor pre = Tensor::empty(c.shape(), DType::bf16, c.device());
  if (!batched_matmul_lt(ctx, a, ta, b, tb, c, CUBLASLT_EPILOGUE_GELU_AUX, {pre.raw(), n, m * n}))
    return false;
  saved.pre_activation = pre;
  return true;
}

bool batched_matmul_activation_backward(const Tensor& a, bool ta, const Tensor& b, bool tb,
                                        Tensor& c, const ops::ActivationSaved& saved) {
  check_same_device(a, b, c, "batched_matmul_activation_backward");
  const int64_t batch = c.dim(0), m = c.dim(1), n = c.dim(2);
  if (c.dtype() != DType::bf16 || batch == 0 || m == 0 || n == 0) return false;
  DeviceContext& ctx = device_context(c);
  if (saved.activation == ops::Epilogue::kRelu) {
    if (!saved.relu_mask.defined()) return false;
    const int64_t ld = relu_mask_ld(n);
    return batched_matmul_lt(ctx, a, ta, b, tb, c, CUBLASLT_EPILOGUE_DRELU,
                             {saved.relu_mask.raw(), ld, ld * m});
  }
  if (n % 8 != 0 || saved.pre_activation.dtype() != DType::bf16) return false;
  return batched_matmul_lt(ctx, a, ta, b, tb, c, CUBLASLT_EPILOGUE_DGELU,
                           {saved.pre_activation.raw(), n, m * n});
}

void grouped_matmul(const Tensor& a, const Tensor& b, bool tb, Tensor& c,
                    const std::vector<int64_t>& offsets, GroupedGemm strategy) {
  check_same_device(a, b, c, "grouped_matmul");
  const int64_t groups = b.dim(0), k = a.dim(1), n = c.dim(1);
  DeviceContext& ctx = device_context(c);
  const GemmTypes t = gemm_types(c.dtype(), "grouped_matmul");
  const size_t elem = dtype_size(c.dtype());
  if (strategy == GroupedGemm::kAuto && offsets.front() == 0) {
    // Equal groups (the padded layout's backward): one strided-batched GEMM, as its forward.
    if (const int64_t rows = equal_group_rows(offsets)) {
      Tensor batched = c.view({groups, rows, n});
      kernels::batched_matmul(a.view({groups, rows, k}), false, b, tb, batched);
      return;
    }
  }
  if (strategy == GroupedGemm::kAuto && c.dtype() == DType::bf16) {
    // The faster of the two for this shape class, measured on this device the first time
    // the class is seen (kernels/expert_layout.cc).
    std::vector<int64_t> rows(groups);
    for (int64_t g = 0; g < groups; ++g) rows[g] = offsets[g + 1] - offsets[g];
    strategy = choose_expert_layout(b, tb, rows, false) == ops::ExpertLayout::kGroupedApi
                   ? GroupedGemm::kGroupedApi
                   : GroupedGemm::kPerGroup;
  }
  if (c.dtype() != DType::bf16 || strategy == GroupedGemm::kPerGroup) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t rows = offsets[g + 1] - offsets[g];
      if (rows == 0) continue;
      const Tensor a_g = a.slice(offsets[g], offsets[g + 1]);
      Tensor c_g = c.slice(offsets[g], offsets[g + 1]);
      matmul(a_g, false, b.slice(g, g + 1).view({b.dim(1), b.dim(2)}), tb, c_g, 1.0, 0.0);
    }
    return;
  }
  std::vector<cublasOperation_t> op_b, op_a;
  std::vector<int> ms, ns, ks, ldbs, ldas, ldcs, sizes;
  std::vector<const void*> b_ptrs, a_ptrs;
  std::vector<void*> c_ptrs;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t rows = offsets[g + 1] - offsets[g];
    if (rows == 0) continue;  // an expert that received no token
    const RowMajorGemm p(rows, n, k, false, tb);
    op_b.push_back(p.op_b);
    op_a.push_back(p.op_a);
    ns.push_back(p.n);
    ms.push_back(p.m);
    ks.push_back(p.k);
    ldbs.push_back(p.ldb);
    ldas.push_back(p.lda);
    ldcs.push_back(p.ldc);
    sizes.push_back(1);
    b_ptrs.push_back(static_cast<const char*>(b.raw()) + g * k * n * elem);
    a_ptrs.push_back(static_cast<const char*>(a.raw()) + offsets[g] * k * elem);
    c_ptrs.push_back(static_cast<char*>(c.raw()) + offsets[g] * n * elem);
  }
  const int count = static_cast<int>(sizes.size());
  if (count == 0) return;
  // The pointer arrays live on the device; the rest of the description on the host.
  Tensor pointers = Tensor::empty({3 * count}, DType::i64, c.device());
  std::vector<const void*> all(b_ptrs);
  all.insert(all.end(), a_ptrs.begin(), a_ptrs.end());
  all.insert(all.end(), c_ptrs.begin(), c_ptrs.end());
  kernels::copy_bytes(pointers.raw(), c.device(), all.data(), Device::cpu(),
                      all.size() * sizeof(void*));
  void** dev = static_cast<void**>(pointers.raw());
  const std::vector<float> ones_f(count, 1.0f), zeros_f(count, 0.0f);
  const std::vector<double> ones(count, 1.0), zeros(count, 0.0);
  SW_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(
      ctx.cublas, op_b.data(), op_a.data(), ns.data(), ms.data(), ks.data(),
      t.scalars_f64 ? static_cast<const void*>(ones.data()) : ones_f.data(),
      const_cast<const void* const*>(dev), t.data, ldbs.data(),
      const_cast<const void* const*>(dev + count), t.data, ldas.data(),
      t.scalars_f64 ? static_cast<const void*>(zeros.data()) : zeros_f.data(), dev + 2 * count,
      t.data, ldcs.data(), count, sizes.data(), t.compute));
}

void grouped_weight_gradient(const Tensor& dy, const Tensor& x, const std::vector<int64_t>& offsets,
                             Tensor& dw) {
  const int64_t n = dw.dim(1), k = dw.dim(2), groups = dw.dim(0);
  if (const int64_t rows = equal_group_rows(offsets); rows > 0 && offsets.back() == dy.dim(0)) {
    // Equal groups (the padded layout's): dw[g] += dy[g]^T x[g] as one strided-batched GEMM.
    strided_batched_gemm(device_context(dw), dy.view({groups, rows, n}), true,
                         x.view({groups, rows, k}), false, dw, 1.0);
    return;
  }
  for (int64_t g = 0; g + 1 < static_cast<int64_t>(offsets.size()); ++g) {
    if (offsets[g + 1] == offsets[g]) continue;
    Tensor slice = dw.slice(g, g + 1).view({n, k});
    matmul(dy.slice(offsets[g], offsets[g + 1]), true, x.slice(offsets[g], offsets[g + 1]), false,
           slice, 1.0, 1.0);
  }
}

}  // namespace sw::kernels
