// The NCCL backend on the GPU machine: a world of one rank (bootstrapped over the local
// communicator) runs every collective on device tensors with the results the local
// backend gives on the host. Skips without a device or in a build without NCCL.
#include "core/dist/communicator.h"
#include "tests/parity/parity_util.h"

namespace sw::parity {
namespace {

class NcclTest : public GpuTest {
 protected:
  void SetUp() override {
    GpuTest::SetUp();
    if (!nccl_built()) GTEST_SKIP() << "built without NCCL";
  }
};

TEST_F(NcclTest, WorldOfOneCollectivesMatchTheHost) {
  const std::unique_ptr<Communicator> bootstrap = local_communicator();
  const std::unique_ptr<Communicator> nccl = nccl_communicator(*bootstrap, 0);
  ASSERT_EQ(nccl->backend(), "nccl");
  ASSERT_EQ(nccl->size(), 1);
  const Tensor x = testing::random_tensor({6, 5}, DType::f32, 3);
  Tensor sum = gpu(x);
  nccl->all_reduce_sum(sum);
  EXPECT_EQ(testing::max_relative_error(host(sum), x), 0.0);
  EXPECT_EQ(testing::max_relative_error(host(nccl->all_gather(gpu(x))), x), 0.0);
  const Tensor moved = nccl->all_to_all_v(gpu(x), {6}, {6});
  EXPECT_EQ(testing::max_relative_error(host(moved), x), 0.0);
  Tensor b = gpu(x);
  nccl->broadcast(b, 0);
  EXPECT_EQ(testing::max_relative_error(host(b), x), 0.0);
  nccl->barrier();
  Tensor on_host = x.clone();
  EXPECT_THROW(nccl->all_reduce_sum(on_host), Error);  // NCCL moves device tensors only
}

}  // namespace
}  // namespace sw::parity
