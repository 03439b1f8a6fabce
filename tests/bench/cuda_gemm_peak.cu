// The GPU's measured matrix-product ceilings through cuBLAS, the denominators of every
// later utilisation figure (MFU, Switch FFN vs dense GEMM): bf16 with f32 accumulation,
// f32 with TF32 off (the parity mode) and f32 with TF32, on random data from the Philox
// kernel. Prints a table and, with --csv FILE, writes it.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernels/random.cuh"

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}
void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "%s: cuBLAS status %d\n", what, static_cast<int>(s));
    std::exit(1);
  }
}

__global__ void to_bf16(const float* in, __nv_bfloat16* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16(in[i] - 0.5f);
}
__global__ void center(float* x, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] -= 0.5f;
}

struct Result {
  std::string mode;
  int64_t n;
  double median_ms, tflops;
};

// Median over `reps` timed products after warm-up, C = A B with n x n operands.
Result time_gemm(cublasHandle_t h, const std::string& mode, int64_t n, const void* a, const void* b,
                 void* c, cudaDataType_t type, cublasComputeType_t compute) {
  const float alpha = 1.0f, beta = 0.0f;
  auto run = [&] {
    check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(n),
                       static_cast<int>(n), &alpha, a, type, static_cast<int>(n), b, type,
                       static_cast<int>(n), &beta, c, type, static_cast<int>(n), compute,
                       CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
  };
  for (int i = 0; i < 3; ++i) run();
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  std::vector<float> ms;
  for (int i = 0; i < 20; ++i) {
    check(cudaEventRecord(start), "record");
    run();
    check(cudaEventRecord(stop), "record");
    check(cudaEventSynchronize(stop), "sync");
    float t = 0;
    check(cudaEventElapsedTime(&t, start, stop), "elapsed");
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  return {mode, n, median, 2.0 * n * n * n / (median * 1e-3) / 1e12};
}

}  // namespace

int main(int argc, char** argv) {
  const char* csv = argc == 3 && std::string(argv[1]) == "--csv" ? argv[2] : nullptr;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "properties");
  std::printf("device: %s, %d SMs, %.0f MB L2\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize / 1e6);

  const int64_t n = 8192, elems = n * n;
  float *a32, *b32, *c32;
  __nv_bfloat16 *a16, *b16, *c16;
  check(cudaMalloc(&a32, elems * 4), "malloc");
  check(cudaMalloc(&b32, elems * 4), "malloc");
  check(cudaMalloc(&c32, elems * 4), "malloc");
  check(cudaMalloc(&a16, elems * 2), "malloc");
  check(cudaMalloc(&b16, elems * 2), "malloc");
  check(cudaMalloc(&c16, elems * 2), "malloc");
  check(sw::kernels::philox_uniform(sw::RandomStream(1, sw::RandomPurpose::kInit, 1, 0), a32, elems,
                                    nullptr),
        "fill");
  check(sw::kernels::philox_uniform(sw::RandomStream(1, sw::RandomPurpose::kInit, 2, 0), b32, elems,
                                    nullptr),
        "fill");
  const unsigned blocks = static_cast<unsigned>((elems + 255) / 256);
  to_bf16<<<blocks, 256>>>(a32, a16, elems);
  to_bf16<<<blocks, 256>>>(b32, b16, elems);
  center<<<blocks, 256>>>(a32, elems);
  center<<<blocks, 256>>>(b32, elems);
  check(cudaDeviceSynchronize(), "prepare");

  cublasHandle_t h;
  check(cublasCreate(&h), "cublasCreate");
  std::vector<Result> results;
  results.push_back(
      time_gemm(h, "bf16 (f32 accumulate)", n, a16, b16, c16, CUDA_R_16BF, CUBLAS_COMPUTE_32F));
  results.push_back(
      time_gemm(h, "f32 (TF32 off)", n, a32, b32, c32, CUDA_R_32F, CUBLAS_COMPUTE_32F_PEDANTIC));
  results.push_back(
      time_gemm(h, "f32 (TF32 on)", n, a32, b32, c32, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32));

  std::printf("\n| mode | n | median ms | TFLOP/s |\n|---|---|---|---|\n");
  for (const Result& r : results)
    std::printf("| %s | %lld | %.3f | %.1f |\n", r.mode.c_str(), static_cast<long long>(r.n),
                r.median_ms, r.tflops);
  if (csv) {
    FILE* f = std::fopen(csv, "w");
    std::fprintf(f, "device,mode,n,median_ms,tflops\n");
    for (const Result& r : results)
      std::fprintf(f, "%s,%s,%lld,%.4f,%.2f\n", prop.name, r.mode.c_str(),
                   static_cast<long long>(r.n), r.median_ms, r.tflops);
    std::fclose(f);
  }
  cublasDestroy(h);
  return 0;
}
