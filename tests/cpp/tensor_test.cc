#include "core/tensor/tensor.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/tensor/bf16.h"

namespace sw {
namespace {

TEST(Tensor, ShapeViewsShareStorage) {
  Tensor t = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.dim(-1), 3);
  Tensor v = t.view({3, 2});
  v.data<float>()[0] = 10;
  EXPECT_EQ(t.item(0), 10);
  EXPECT_TRUE(v.shares_storage_with(t));
  Tensor row = t.slice(1, 2);
  EXPECT_EQ(row.shape(), Shape({1, 3}));
  EXPECT_EQ(row.item(0), 4);
  Tensor c = t.clone();
  c.data<float>()[1] = -1;
  EXPECT_EQ(t.item(1), 2);
}

TEST(Tensor, BadShapesAndAccessAreErrors) {
  Tensor t = Tensor::zeros({2, 3}, DType::f32);
  EXPECT_THROW(t.view({4, 2}), Error);
  EXPECT_THROW(t.slice(1, 3), Error);
  EXPECT_THROW(t.data<double>(), Error);
  EXPECT_THROW(t.dim(2), Error);
  EXPECT_THROW(Tensor::empty({-1, 2}, DType::f32), Error);
  EXPECT_THROW(t.to(DType::i32), Error);
  try {
    check_shape(t, {3, 2}, "weights");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("weights: expected shape [3, 2], got [2, 3]"),
              std::string::npos);
  }
}

TEST(Tensor, UndefinedAndHugeTensorsAreErrors) {
  const Tensor undefined;
  EXPECT_FALSE(undefined.defined());
  EXPECT_THROW(undefined.item(0), Error);
  EXPECT_THROW(undefined.clone(), Error);
  EXPECT_THROW(undefined.data<float>(), Error);
  Tensor target = Tensor::zeros({1}, DType::f32);
  EXPECT_THROW(target.copy_from(undefined), Error);
  // 2^62 + 2 elements: the element count fits, the byte count does not.
  EXPECT_THROW(Tensor::empty({int64_t{1} << 62 | 2}, DType::f32), Error);
  EXPECT_THROW(Tensor::empty({int64_t{1} << 40, int64_t{1} << 40}, DType::f32), Error);
  EXPECT_TRUE(Tensor::empty({0, 5}, DType::f32).defined());
  EXPECT_THROW(Tensor::from_vector<int64_t>({int64_t{1} << 40}, {1}).to(DType::i32), Error);
}

TEST(CpuAllocator, CachesLargeBlocksUpToTheLimit) {
  const size_t previous = set_cpu_cache_limit(size_t{64} << 20);
  set_cpu_cache_limit(0);  // start empty
  set_cpu_cache_limit(size_t{64} << 20);
  const void* first;
  {
    Tensor big = Tensor::empty({1 << 20}, DType::f32);  // 4 MiB
    first = big.raw();
  }
  EXPECT_EQ(cpu_cached_bytes(), size_t{4} << 20);
  Tensor again = Tensor::empty({1 << 20}, DType::f32);
  EXPECT_EQ(again.raw(), first);  // the cached block, reused
  EXPECT_EQ(cpu_cached_bytes(), 0u);
  { Tensor small = Tensor::empty({1000}, DType::f32); }
  EXPECT_EQ(cpu_cached_bytes(), 0u);  // small blocks are not cached
  set_cpu_cache_limit(0);
  { Tensor big = Tensor::empty({1 << 20}, DType::f32); }
  EXPECT_EQ(cpu_cached_bytes(), 0u);  // caching off
  set_cpu_cache_limit(previous);
}

// Live bytes are what tensors hold now (a cached block is not live); the peak is the most
// at once since the last reset, which restarts it from the live bytes.
TEST(CpuAllocator, CountsLiveAndPeakBytes) {
  const size_t live = cpu_live_bytes();
  reset_cpu_peak_bytes();
  EXPECT_EQ(cpu_peak_bytes(), live);
  {
    Tensor big = Tensor::empty({1 << 20}, DType::f32);  // 4 MiB, cached when freed
    Tensor small = Tensor::empty({1000}, DType::f64);
    EXPECT_EQ(cpu_live_bytes(), live + (size_t{4} << 20) + 8000);
  }
  EXPECT_EQ(cpu_live_bytes(), live);
  EXPECT_EQ(cpu_peak_bytes(), live + (size_t{4} << 20) + 8000);
  { Tensor again = Tensor::empty({1 << 19}, DType::f32); }  // 2 MiB: below the peak
  EXPECT_EQ(reset_cpu_peak_bytes(), live + (size_t{4} << 20) + 8000);
  EXPECT_EQ(cpu_peak_bytes(), live);
}

TEST(Tensor, DtypeConversions) {
  Tensor t = Tensor::from_vector<double>({1.5, -2.25, 3e-3}, {3});
  Tensor f = t.to(DType::f32);
  EXPECT_EQ(f.dtype(), DType::f32);
  EXPECT_FLOAT_EQ(static_cast<float>(f.item(2)), 3e-3f);
  Tensor b = t.to(DType::bf16);
  EXPECT_EQ(b.item(0), 1.5);
  EXPECT_EQ(b.item(1), -2.25);
  Tensor i = Tensor::from_vector<int32_t>({7, -3}, {2}).to(DType::i64);
  EXPECT_EQ(i.item(1), -3);
}

TEST(Bf16, RoundsToNearestEven) {
  // 1 + 2^-8 lies exactly between two bf16 values (1 and 1 + 2^-7): ties go to even (1).
  EXPECT_EQ(to_float(to_bf16(1.0f + 1.0f / 256)), 1.0f);
  // 1 + 3 * 2^-8 lies between 1 + 2^-7 and 1 + 2^-6; ties go to the even mantissa (1 + 2^-6).
  EXPECT_EQ(to_float(to_bf16(1.0f + 3.0f / 256)), 1.0f + 1.0f / 64);
  EXPECT_EQ(to_float(to_bf16(-0.0f)), -0.0f);
  EXPECT_TRUE(std::isnan(to_float(to_bf16(NAN))));
  EXPECT_TRUE(std::isinf(to_float(to_bf16(INFINITY))));
}

TEST(Device, ParseAndUnsupported) {
  EXPECT_TRUE(Device::parse("cpu").is_cpu());
  EXPECT_EQ(Device::parse("cuda:3").index, 3);
  EXPECT_EQ(Device::parse("cuda").str(), "cuda:0");
  for (const char* bad : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""})
    EXPECT_THROW(Device::parse(bad), Error) << bad;
  // No GPU here (or no CUDA at all): a clear error, never a crash.
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is present";
  try {
    Tensor::empty({2}, DType::f32, Device::cuda(0));
    FAIL();
  } catch (const Error& e) {
    // Without CUDA: unsupported ("built without CUDA"); with CUDA but no GPU: a device error.
    EXPECT_EQ(e.status(), cuda_built() ? Status::kDevice : Status::kUnsupported) << e.what();
    EXPECT_NE(std::string(e.what()).find(cuda_built() ? "cuda:0" : "built without CUDA"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace sw
