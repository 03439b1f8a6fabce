// The distributed code under `mpirun -np N` (N = 2 or 4; ctest runs both): the MPI
// communicator's collectives, sub-communicators, and data-parallel training against a
// single process taking the same global batch. Every rank runs every test; only rank 0
// prints. Run without a launcher, the tests use a 1-rank world.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dist/communicator.h"
#include "core/dist/data_parallel.h"
#include "core/dist/device_communicator.h"
#include "core/dist/expert_parallel.h"
#include "core/dist/layout.h"
#include "core/dist/model_parallel.h"
#include "core/dist/traffic.h"
#include "core/io/checkpoint.h"
#include "core/model/switch_ffn.h"
#include "core/model/switch_transformer.h"
#include "core/tensor/philox.h"
#include "core/train/trainer.h"

namespace sw {
namespace {

Communicator& world() {
  static std::unique_ptr<Communicator> comm =
      launched_by_mpi() ? mpi_world() : local_communicator();
  return *comm;
}

TEST(Communicator, AllReduceGatherBroadcast) {
  Communicator& c = world();
  const int r = c.rank(), n = c.size();
  Tensor x = Tensor::from_vector<float>({1.0f * r, 2.0f, -0.5f * r}, {3});
  c.all_reduce_sum(x);
  const float ranks = n * (n - 1) / 2.0f;
  EXPECT_EQ(x.data<float>()[0], ranks);
  EXPECT_EQ(x.data<float>()[1], 2.0f * n);
  EXPECT_EQ(x.data<float>()[2], -0.5f * ranks);
  Tensor i64 = Tensor::from_vector<int64_t>({int64_t{1} << 40}, {1});
  c.all_reduce_sum(i64);
  EXPECT_EQ(i64.data<int64_t>()[0], n * (int64_t{1} << 40));

  const Tensor gathered = c.all_gather(Tensor::from_vector<int32_t>({r, 10 * r}, {1, 2}));
  ASSERT_EQ(gathered.shape(), (Shape{n, 2}));
  for (int k = 0; k < n; ++k) {
    EXPECT_EQ(gathered.data<int32_t>()[2 * k], k);
    EXPECT_EQ(gathered.data<int32_t>()[2 * k + 1], 10 * k);
  }
  Tensor b = Tensor::full({4}, DType::f64, r == n - 1 ? 7.0 : -1.0);
  c.broadcast(b, n - 1);
  for (int k = 0; k < 4; ++k) EXPECT_EQ(b.data<double>()[k], 7.0);
}

// Counted traffic follows traffic.h's conventions on every collective, through groups split
// from the counted world too, and the results are the inner communicator's.
TEST(Communicator, CountsTheBytesEachRankSends) {
  const int r = world().rank(), n = world().size();
  CountingCommunicator c(world().split(0, r));
  Tensor x = Tensor::full({10}, DType::f32, 1.0);  // 40 bytes
  c.all_reduce_sum(x);
  EXPECT_EQ(x.data<float>()[0], static_cast<float>(n));
  EXPECT_DOUBLE_EQ(c.counts().all_reduce, 2.0 * (n - 1) / n * 40);
  c.all_gather(Tensor::zeros({3}, DType::f64));  // 24 bytes
  EXPECT_DOUBLE_EQ(c.counts().all_gather, (n - 1) * 24.0);
  // r + 1 rows of 2 f32 (8 bytes) to each rank; those to itself are not sent.
  std::vector<int64_t> send(n, r + 1), recv(n);
  for (int s = 0; s < n; ++s) recv[s] = s + 1;
  c.all_to_all_v(Tensor::zeros({n * (r + 1), 2}, DType::f32), send, recv);
  EXPECT_DOUBLE_EQ(c.counts().all_to_all, (n - 1) * (r + 1) * 8.0);
  Tensor b = Tensor::zeros({4}, DType::i64);  // 32 bytes
  c.broadcast(b, 0);
  EXPECT_DOUBLE_EQ(c.counts().broadcast, (n - 1.0) / n * 32);
  // A group of the even and of the odd ranks adds to the same counts.
  const std::unique_ptr<Communicator> half = c.split(r % 2, r);
  Tensor y = Tensor::zeros({100}, DType::f32);
  half->all_reduce_sum(y);
  const double p = half->size();
  EXPECT_DOUBLE_EQ(c.counts().all_reduce, 2.0 * (n - 1) / n * 40 + 2 * (p - 1) / p * 400);
  EXPECT_DOUBLE_EQ(c.counts().total(), c.counts().all_reduce + c.counts().all_gather +
                                           c.counts().all_to_all + c.counts().broadcast);
}

// Rank r sends (r + 1) * (d + 1) rows to rank d, each row [r, d, i]: uneven counts, and
// every row arrives where and in the order it should.
TEST(Communicator, AllToAllVWithUnevenCounts) {
  Communicator& c = world();
  const int r = c.rank(), n = c.size();
  std::vector<int64_t> send_rows(n);
  std::vector<int32_t> data;
  for (int d = 0; d < n; ++d) {
    send_rows[d] = (r + 1) * (d + 1);
    for (int i = 0; i < send_rows[d]; ++i) data.insert(data.end(), {r, d, i});
  }
  const std::vector<int64_t> recv_rows = exchange_counts(c, send_rows);
  for (int s = 0; s < n; ++s) EXPECT_EQ(recv_rows[s], (s + 1) * (r + 1));
  const Tensor got =
      c.all_to_all_v(Tensor::from_vector<int32_t>(data, {static_cast<int64_t>(data.size() / 3), 3}),
                     send_rows, recv_rows);
  int64_t row = 0;
  for (int s = 0; s < n; ++s)
    for (int i = 0; i < recv_rows[s]; ++i, ++row) {
      EXPECT_EQ(got.data<int32_t>()[3 * row], s);
      EXPECT_EQ(got.data<int32_t>()[3 * row + 1], r);
      EXPECT_EQ(got.data<int32_t>()[3 * row + 2], i);
    }
  EXPECT_EQ(row, got.dim(0));
  // A count that does not add up is refused before any communication.
  std::vector<int64_t> wrong = send_rows;
  wrong[0] += 1;
  EXPECT_THROW(c.all_to_all_v(Tensor::zeros({1, 3}, DType::i32), wrong, recv_rows), Error);
}

TEST(Communicator, SplitIntoGroups) {
  Communicator& c = world();
  const int r = c.rank(), n = c.size();
  // Two groups when there are two or more ranks: even and odd ranks.
  const std::unique_ptr<Communicator> group = c.split(r % 2, r);
  EXPECT_EQ(group->size(), n == 1 ? 1 : (n - r % 2 + 1) / 2);
  EXPECT_EQ(group->rank(), r / 2);
  Tensor x = Tensor::from_vector<int64_t>({r}, {1});
  group->all_reduce_sum(x);
  int64_t expected = 0;
  for (int k = r % 2; k < n; k += 2) expected += k;
  EXPECT_EQ(x.data<int64_t>()[0], expected);
}

Tensor testing_random(const Shape& shape, uint32_t seed, double std) {
  const RandomStream s(seed, RandomPurpose::kData, 0, 0);
  Tensor t = Tensor::empty(shape, DType::f32);
  for (int64_t i = 0; i < t.numel(); ++i)
    t.data<float>()[i] = static_cast<float>(std * (2.0 * s.uniform(i) - 1.0));
  return t;
}

Batch global_batch(const ModelConfig& c, int64_t batch) {
  Batch b;
  b.input_ids = Tensor::empty({batch, 12}, DType::i32);
  b.decoder_input_ids = Tensor::empty({batch, 5}, DType::i32);
  const RandomStream s(3, RandomPurpose::kData, 0, 0);
  for (int64_t i = 0; i < b.input_ids.numel(); ++i)
    b.input_ids.data<int32_t>()[i] = 2 + static_cast<int32_t>(s.bits(i) % (c.vocab_size() - 2));
  for (int64_t i = 0; i < b.decoder_input_ids.numel(); ++i)
    b.decoder_input_ids.data<int32_t>()[i] =
        2 + static_cast<int32_t>(s.bits(1 << 20 | i) % (c.vocab_size() - 2));
  b.labels = b.decoder_input_ids.clone();
  b.labels.data<int32_t>()[3] = -100;  // unequal label counts per shard
  return b;
}

double max_relative_difference(const Tensor& a_in, const Tensor& b_in) {
  const Tensor a = a_in.to(Device::cpu()), b = b_in.to(Device::cpu());
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::fabs(a.item(i) - b.item(i)));
    ref = std::max(ref, std::fabs(b.item(i)));
  }
  return ref > 0 ? diff / ref : diff;
}

// The world for ranks training on GPUs: device tensors moved by `transport`, each rank on
// its local rank's GPU (core/dist/device_communicator.h). Null without a GPU, or for NCCL
// when this host's ranks outnumber its GPUs (NCCL runs one rank per GPU).
const LocalRank& this_local_rank() {
  static const LocalRank local = local_rank(world());  // collective: on first use, every rank
  return local;
}

Communicator* device_world(DeviceTransport transport) {
  // Never destroyed: NCCL's teardown must not run after CUDA's at exit.
  static auto* made = new std::map<DeviceTransport, std::unique_ptr<Communicator>>;
  const int gpus = cuda_device_count();
  const LocalRank& local = this_local_rank();
  if (gpus == 0 || (transport == DeviceTransport::kNccl && (!nccl_built() || local.size > gpus)))
    return nullptr;
  std::unique_ptr<Communicator>& c = (*made)[transport];
  if (!c)
    c = device_communicator(launched_by_mpi() ? mpi_world() : local_communicator(),
                            rank_device("cuda", local, gpus, transport), transport);
  return c.get();
}

// The GPU this rank's device world runs on (cuda:N of its backend's routing).
Device rank_gpu() {
  return rank_device("cuda", this_local_rank(), cuda_device_count(), DeviceTransport::kHostStaged);
}

// Started collectives (several in flight at once, poked with test(), finished out of
// order) give the blocking ones' results, on the host or on `device`.
void expect_started_collectives_match_blocking(Communicator& d, Device device) {
  Communicator& c = world();
  const int r = c.rank();
  std::vector<Tensor> inputs;
  for (int k = 0; k < 3; ++k)
    inputs.push_back(testing_random({4 + k, 3}, 31 + static_cast<uint32_t>(10 * r + k), 1.0));
  std::vector<Tensor> sums;
  std::vector<std::unique_ptr<PendingCollective>> pending;
  for (const Tensor& x : inputs) {
    sums.push_back(x.to(device));
    pending.push_back(d.start_all_reduce_sum(sums.back()));
    pending.push_back(d.start_all_gather(x.to(device)));
    for (auto& p : pending) p->test();
  }
  for (size_t k = pending.size(); k-- > 0;) {  // the last started first
    const Tensor got = pending[k]->wait();
    const Tensor& x = inputs[k / 2];
    if (k % 2 == 0) {
      Tensor want = x.clone();
      c.all_reduce_sum(want);
      EXPECT_EQ(got.raw(), sums[k / 2].raw()) << "a sum in place";
      EXPECT_LE(max_relative_difference(got, want), 1e-6) << "sum " << k / 2;
    } else {
      EXPECT_EQ(got.device(), device);
      EXPECT_EQ(max_relative_difference(got, c.all_gather(x)), 0.0) << "gather " << k / 2;
    }
    EXPECT_TRUE(pending[k]->test());
  }
}

TEST(Communicator, StartedCollectivesMatchBlockingOnes) {
  expect_started_collectives_match_blocking(world(), Device::cpu());
  CountingCommunicator counted(local_communicator());  // the default: finished at once
  Tensor x = Tensor::full({3}, DType::f32, 2.0);
  EXPECT_TRUE(counted.start_all_reduce_sum(x)->test());
  EXPECT_EQ(counted.start_all_gather(x.view({1, 3}))->wait().shape(), (Shape{1, 3}));
}

// Buckets of mixed dtypes, many of them in flight or one at a time, sum every tensor
// exactly as one all-reduce per tensor does (integer-valued, so in any order), rank-ordered
// or not; a dtype change closes a bucket, and a tensor larger than a bucket is one alone.
TEST(BucketedReduction, SmallBucketsInFlightSumLikeOneCollectivePerTensor) {
  Communicator& c = world();
  const int r = c.rank();
  for (const Reduction reduction : {Reduction::kAllReduce, Reduction::kRankOrdered}) {
    for (const int in_flight : {1, 3}) {
      std::vector<Tensor> tensors, want;
      // Rank-ordered sums add with ops::add_, which takes floating point only.
      const DType integers = reduction == Reduction::kAllReduce ? DType::i64 : DType::f64;
      // f32 of 16, 40 and 8 bytes, f64 of 64, f32 of 12, i64 (f64) of 24, f32 of 160;
      // 64-byte buckets.
      const std::vector<std::pair<DType, int64_t>> shapes = {
          {DType::f32, 4}, {DType::f32, 10}, {DType::f32, 2}, {DType::f64, 8},
          {DType::f32, 3}, {integers, 3},    {DType::f32, 40}};
      for (size_t i = 0; i < shapes.size(); ++i) {
        std::vector<int64_t> values(shapes[i].second);
        for (size_t k = 0; k < values.size(); ++k)
          values[k] = (r + 1) * (static_cast<int64_t>(k) - 3) + 7 * static_cast<int64_t>(i);
        Tensor t = Tensor::from_vector<int64_t>(values, {shapes[i].second});
        if (shapes[i].first != DType::i64) {
          Tensor f = Tensor::empty(t.shape(), shapes[i].first);  // exact integers
          for (int64_t k = 0; k < t.numel(); ++k) {
            if (f.dtype() == DType::f32) f.data<float>()[k] = static_cast<float>(values[k]);
            if (f.dtype() == DType::f64) f.data<double>()[k] = static_cast<double>(values[k]);
          }
          t = f;
        }
        tensors.push_back(t);
        want.push_back(t.clone());
        c.all_reduce_sum(want.back());
      }
      BucketedReduction sums(c, reduction, 64, in_flight);
      for (const Tensor& t : tensors) {
        sums.add(t);
        sums.progress();
      }
      sums.finish();
      // Buckets: {16 + 40 + 8 f32} (full to the byte), {64 f64}, {12 f32}, {24 i64}, {160 f32}.
      EXPECT_EQ(sums.buckets_started(), c.size() > 1 ? 5 : 0);
      for (size_t i = 0; i < tensors.size(); ++i)
        EXPECT_EQ(max_relative_difference(tensors[i], want[i]), 0.0)
            << "tensor " << i << ", in flight " << in_flight;
    }
  }
  EXPECT_THROW(BucketedReduction(c, Reduction::kAllReduce, 64, 0), Error);
}

// Data-parallel steps over the world equal one process stepping on the global batch cut
// into as many micro-batches (the same shares, the same dropout streams). Rank-ordered
// reduction: every updated parameter bit for bit. All-reduce (the backend's summation
// order): within 1e-4 after 3 AdamW steps — AdamW divides each update by its own RMS, so
// the last-bit differences of near-zero gradients come back as ~1e-5 of the weights.
void expect_data_parallel_equals_single_process(bool dropout, Reduction reduction,
                                                Communicator& c = world(),
                                                Device device = Device::cpu(),
                                                size_t bucket_bytes = kDefaultBucketBytes,
                                                bool overlap = true) {
  ModelConfig config = preset("tiny");
  if (!dropout) {
    config.set_dropout_rate(0);
    config.set_expert_dropout_rate(0);
  }
  const int64_t global = 4 * c.size();
  const Batch batch = global_batch(config, global);
  TrainOptions options;
  options.optimizer = TrainOptions::OptimizerKind::kAdamW;
  options.schedule.kind = LearningRateSchedule::Kind::kConstant;
  options.schedule.base = 1e-3;

  SwitchTransformer single_model(config, 11, DType::f32, device);
  Trainer single(single_model, options);
  SwitchTransformer replica_model(config, 11, DType::f32, device);
  options.data_parallel = &c;
  options.gradient_reduction = reduction;
  options.gradient_bucket_bytes = bucket_bytes;
  options.overlap_reduction = overlap;
  Trainer replica(replica_model, options);
  for (int step = 0; step < 3; ++step) {
    const TrainMetrics a = single.step(split_micro_batches(batch, c.size()));
    const TrainMetrics b = replica.step({shard_batch(batch, c.rank(), c.size())});
    EXPECT_NEAR(b.loss, a.loss, 1e-5 * std::fabs(a.loss)) << "step " << step;
    EXPECT_NEAR(b.grad_norm, a.grad_norm, 1e-5 * a.grad_norm) << "step " << step;
    EXPECT_EQ(b.tokens, a.tokens);
    ASSERT_EQ(b.layers.size(), a.layers.size());
    for (size_t l = 0; l < a.layers.size(); ++l)
      EXPECT_EQ(b.layers[l].tokens_per_expert, a.layers[l].tokens_per_expert);
  }
  const auto& want = single_model.parameters().entries();
  const auto& got = replica_model.parameters().entries();
  for (size_t i = 0; i < want.size(); ++i) {
    if (reduction == Reduction::kRankOrdered)
      EXPECT_EQ(0, std::memcmp(got[i].tensor.to(Device::cpu()).raw(),
                               want[i].tensor.to(Device::cpu()).raw(), want[i].tensor.nbytes()))
          << want[i].name;
    else
      EXPECT_LE(max_relative_difference(got[i].tensor, want[i].tensor), 1e-4) << want[i].name;
  }
}

TEST(DataParallel, EqualsASingleProcessBitForBit) {
  expect_data_parallel_equals_single_process(false, Reduction::kRankOrdered);
}

TEST(DataParallel, EqualsASingleProcessBitForBitWithDropout) {
  expect_data_parallel_equals_single_process(true, Reduction::kRankOrdered);
}

TEST(DataParallel, AllReduceIsWithinTolerance) {
  expect_data_parallel_equals_single_process(true, Reduction::kAllReduce);
}

// 4 KiB buckets: most start while the backward runs, two at a time in flight; the sums
// stay bit for bit those of one process.
TEST(DataParallel, OverlappedSmallBucketsAreBitForBit) {
  expect_data_parallel_equals_single_process(true, Reduction::kRankOrdered, world(), Device::cpu(),
                                             4096);
  expect_data_parallel_equals_single_process(true, Reduction::kAllReduce, world(), Device::cpu(),
                                             4096);
}

// Two micro-batches per replica: with overlap, the last one's gradients are added to the
// first's as the backward finishes them and handed on; the same bits as adding them all
// and summing after the backward.
TEST(DataParallel, OverlapWithMicroBatchesEqualsSummingAfterTheBackward) {
  Communicator& c = world();
  const ModelConfig config = preset("tiny");
  const Batch batch = global_batch(config, 4 * c.size());
  const Batch shard = shard_batch(batch, c.rank(), c.size());
  TrainOptions options;
  options.data_parallel = &c;
  options.gradient_bucket_bytes = 4096;
  SwitchTransformer overlapped_model(config, 11), after_model(config, 11), single_model(config, 11);
  Trainer overlapped(overlapped_model, options);
  options.overlap_reduction = false;
  Trainer after(after_model, options);
  options.data_parallel = nullptr;
  Trainer single(single_model, options);
  for (int step = 0; step < 2; ++step) {
    const TrainMetrics a = overlapped.step(split_micro_batches(shard, 2));
    const TrainMetrics b = after.step(split_micro_batches(shard, 2));
    const TrainMetrics one = single.step(split_micro_batches(batch, 2 * c.size()));
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_EQ(a.grad_norm, b.grad_norm);
    EXPECT_NEAR(a.grad_norm, one.grad_norm, 1e-5 * one.grad_norm);
  }
  const auto& got = overlapped_model.parameters().entries();
  for (size_t i = 0; i < got.size(); ++i) {
    const Tensor& want = after_model.parameters().entries()[i].tensor;
    EXPECT_EQ(0, std::memcmp(got[i].tensor.raw(), want.raw(), want.nbytes())) << got[i].name;
    EXPECT_LE(max_relative_difference(got[i].tensor, single_model.parameters().entries()[i].tensor),
              1e-4)
        << got[i].name;
  }
}

TEST(DataParallel, SummedAfterTheBackwardIsBitForBit) {
  expect_data_parallel_equals_single_process(true, Reduction::kRankOrdered, world(), Device::cpu(),
                                             4096, false);
}

TEST(DataParallel, ReplicasStayIdentical) {
  Communicator& c = world();
  ModelConfig config = preset("tiny");
  SwitchTransformer model(config, 5);
  TrainOptions options;
  options.data_parallel = &c;
  Trainer trainer(model, options);
  const Batch batch = global_batch(config, 2 * c.size());
  trainer.step({shard_batch(batch, c.rank(), c.size())});
  // Every replica's parameters equal rank 0's, bit for bit.
  for (const auto& e : model.parameters().entries()) {
    Tensor mine = e.tensor.clone(), root = e.tensor.clone();
    c.broadcast(root, 0);
    ASSERT_EQ(0, std::memcmp(mine.raw(), root.raw(), mine.nbytes())) << e.name;
  }
}

// ---------------------------------------------------------------- expert parallelism

Tensor experts_slice(const Tensor& all, const ExpertShard& shard) {
  return all.slice(shard.first, shard.first + shard.count).clone();
}

// One Switch layer with its experts over the world against the same layer in one process
// on every rank's own tokens: outputs, input gradients and router gradients per rank;
// each local expert's gradient equals the sum over ranks of the single-process gradients
// of that expert (it saw every rank's tokens). Train mode: jitter and expert dropout on.
void expect_expert_parallel_layer_matches(ModelConfig::Activation activation) {
  Communicator& c = world();
  ModelConfig config = preset("tiny");
  config.set_num_experts(8);
  config.set_d_model(16);
  config.set_d_ff(32);
  config.set_activation(activation);
  config.set_expert_dropout_rate(0.2);
  config.set_router_jitter_eps(0.05);
  config.set_train_capacity_factor(1.0);  // capacity 1 per group: tokens are dropped
  config.set_min_capacity(1);
  const int64_t experts = 8, d = 16, d_ff = 32, group = 8, n = 2 * group;
  const ExpertShard shard = expert_shard(experts, c.rank(), c.size());
  SwitchWeights full;
  full.router = testing_random({experts, d}, 1, 0.5);
  const bool gated = activation == ModelConfig::GATED_GELU;
  if (gated) {
    full.experts.wi_0 = testing_random({experts, d_ff, d}, 2, 0.3);
    full.experts.wi_1 = testing_random({experts, d_ff, d}, 3, 0.3);
  } else {
    full.experts.wi = testing_random({experts, d_ff, d}, 2, 0.3);
  }
  full.experts.wo = testing_random({experts, d, d_ff}, 4, 0.3);
  SwitchWeights local = full;
  if (gated) {
    local.experts.wi_0 = experts_slice(full.experts.wi_0, shard);
    local.experts.wi_1 = experts_slice(full.experts.wi_1, shard);
  } else {
    local.experts.wi = experts_slice(full.experts.wi, shard);
  }
  local.experts.wo = experts_slice(full.experts.wo, shard);
  const Tensor x = testing_random({n, d}, 100 + static_cast<uint32_t>(c.rank()), 1.0);
  const Tensor dy = testing_random({n, d}, 200 + static_cast<uint32_t>(c.rank()), 1.0);
  RunContext ctx;
  ctx.train = true;
  ctx.seed = 7;
  ctx.step = 3;

  const SwitchOutput want = switch_ffn(full, config, x, group, ctx, {1, 2});
  SwitchGradients want_grads;
  const Tensor want_dx =
      switch_ffn_backward(full, config, x, want, dy, 1.0, 1.0, group, ctx, {1, 2}, want_grads);
  const SwitchOutput got = switch_ffn(local, config, x, group, ctx, {1, 2}, &c);
  SwitchGradients grads;
  const Tensor dx =
      switch_ffn_backward(local, config, x, got, dy, 1.0, 1.0, group, ctx, {1, 2}, grads);

  EXPECT_GT(want.assignment.dropped, 0);
  EXPECT_LE(max_relative_difference(got.y, want.y), 1e-5);
  EXPECT_LE(max_relative_difference(dx, want_dx), 1e-5);
  EXPECT_LE(max_relative_difference(grads.router, want_grads.router), 1e-5);
  for (auto [mine, all] : {std::pair{grads.experts.wo, want_grads.experts.wo},
                           std::pair{grads.experts.wi, want_grads.experts.wi},
                           std::pair{grads.experts.wi_0, want_grads.experts.wi_0},
                           std::pair{grads.experts.wi_1, want_grads.experts.wi_1}}) {
    if (!all.defined()) continue;
    Tensor summed = all.clone();
    c.all_reduce_sum(summed);
    EXPECT_LE(max_relative_difference(mine, experts_slice(summed, shard)), 1e-5);
  }
}

TEST(ExpertParallel, LayerMatchesOneProcessRelu) {
  expect_expert_parallel_layer_matches(ModelConfig::RELU);
}

TEST(ExpertParallel, LayerMatchesOneProcessGatedGelu) {
  expect_expert_parallel_layer_matches(ModelConfig::GATED_GELU);
}

// A model whose experts are split over an expert group (the world, or with dp x ep each
// pair of consecutive ranks) holds only its share, initialised as the single-process
// model's, and trains like it: every rank's batch shard is one micro-batch of the single
// process. Non-expert gradients are summed over all ranks, expert gradients over the
// ranks holding the same experts (none when the group is the world).
void expect_expert_parallel_training_matches(Communicator& ep, Communicator& c = world(),
                                             Device device = Device::cpu(),
                                             size_t bucket_bytes = kDefaultBucketBytes) {
  ModelConfig config = preset("tiny");  // 8 experts
  config.set_dropout_rate(0);
  config.set_expert_dropout_rate(0);
  const Batch batch = global_batch(config, 2 * c.size());
  TrainOptions options;
  options.schedule.kind = LearningRateSchedule::Kind::kConstant;
  options.schedule.base = 1e-2;
  SwitchTransformer single_model(config, 11, DType::f32, device);
  Trainer single(single_model, options);
  SwitchTransformer sharded(config, 11, DType::f32, device, &ep);
  // Only this rank's experts, initialised as in the single process.
  const ExpertShard shard = expert_shard(8, ep.rank(), ep.size());
  for (const auto& e : sharded.parameters().entries()) {
    ASSERT_TRUE(single_model.parameters().contains(e.name)) << e.name;
    EXPECT_EQ(0, std::memcmp(e.tensor.to(Device::cpu()).raw(),
                             single_model.parameters().get(e.name).to(Device::cpu()).raw(),
                             e.tensor.nbytes()))
        << e.name;
  }
  EXPECT_FALSE(sharded.parameters().contains("encoder.block.1.layer.1.mlp.experts.expert_" +
                                             std::to_string((shard.first + shard.count) % 8) +
                                             ".wo.weight") &&
               ep.size() > 1);
  options.data_parallel = &c;
  options.expert_parallel = &ep;
  options.gradient_bucket_bytes = bucket_bytes;
  Trainer trainer(sharded, options);
  // The gradient of the global batch, every parameter this rank holds, within 1e-5.
  TrainMetrics ma, mb;
  const auto want_grads = single.accumulate(split_micro_batches(batch, c.size()), ma);
  const auto got_grads = trainer.accumulate({shard_batch(batch, c.rank(), c.size())}, mb);
  std::map<std::string, Tensor> want_by_name(want_grads.begin(), want_grads.end());
  ASSERT_EQ(got_grads.size(), sharded.parameters().entries().size());
  for (const auto& [name, g] : got_grads)
    EXPECT_LE(max_relative_difference(g, want_by_name.at(name)), 1e-5) << name;
  // Steps: the same losses within 1e-5; the parameters within 1e-4 after 3 Adafactor steps
  // (the updates are divided by the gradients' own RMS, which turns the last-bit
  // differences of near-zero gradients into ~1e-5 of the weights).
  for (int step = 0; step < 3; ++step) {
    const TrainMetrics a = single.step(split_micro_batches(batch, c.size()));
    const TrainMetrics b = trainer.step({shard_batch(batch, c.rank(), c.size())});
    EXPECT_NEAR(b.loss, a.loss, 1e-5 * a.loss) << "step " << step;
    EXPECT_NEAR(b.grad_norm, a.grad_norm, 1e-5 * a.grad_norm) << "step " << step;
  }
  for (const auto& e : sharded.parameters().entries())
    EXPECT_LE(max_relative_difference(e.tensor, single_model.parameters().get(e.name)), 1e-4)
        << e.name;
}

TEST(ExpertParallel, TrainingMatchesOneProcess) {
  expect_expert_parallel_training_matches(world());
}

// dp x ep = 2 x 2: ranks 2i and 2i + 1 split the experts, every rank a shard of the batch,
// expert gradients summed over ranks i and i + 2.
TEST(ExpertParallel, WithDataParallelReplicas) {
  Communicator& c = world();
  if (c.size() != 4) GTEST_SKIP() << "needs 4 ranks";
  const std::unique_ptr<Communicator> experts = c.split(c.rank() / 2, c.rank() % 2);
  expect_expert_parallel_training_matches(*experts);
  // Small buckets: the expert and the replicated groups' sums in flight together.
  expect_expert_parallel_training_matches(*experts, c, Device::cpu(), 4096);
}

// ---------------------------------------------------------------- launching on GPUs

// The message of the error fn throws ("" when it throws none).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(LocalRank, RanksOfOneHostCountInRankOrder) {
  Communicator& c = world();
  const LocalRank local = local_rank(c);  // the tests' ranks all run on this host
  EXPECT_EQ(local.rank, c.rank());
  EXPECT_EQ(local.size, c.size());
}

TEST(RankDevice, EachLocalRankTakesAGpu) {
  using T = DeviceTransport;
  EXPECT_EQ(rank_device("cuda", {1, 2}, 2, T::kNccl), Device::cuda(1));
  EXPECT_EQ(rank_device("cuda", {0, 1}, 8, T::kNccl), Device::cuda(0));
  // Staged ranks may share: local rank 3 of 4 on 2 GPUs takes the second.
  EXPECT_EQ(rank_device("cuda", {3, 4}, 2, T::kHostStaged), Device::cuda(1));
  EXPECT_EQ(rank_device("cuda:1", {0, 4}, 2, T::kHostStaged), Device::cuda(1));
  EXPECT_EQ(rank_device("cuda:0", {0, 1}, 1, T::kNccl), Device::cuda(0));
  EXPECT_EQ(rank_device("cpu", {2, 4}, 0, T::kNccl), Device::cpu());
  EXPECT_EQ(parse_device_transport("nccl"), T::kNccl);
  EXPECT_EQ(parse_device_transport("staged"), T::kHostStaged);
}

TEST(RankDevice, RefusesWhatCannotRun) {
  using T = DeviceTransport;
  auto has = [](const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
  };
  // Every local rank sees the same GPUs (no per-rank CUDA_VISIBLE_DEVICES).
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string saved = visible ? visible : "";
  unsetenv("CUDA_VISIBLE_DEVICES");
  std::string e = error_of([] { rank_device("cuda", {0, 4}, 2, T::kNccl); });
  if (visible) setenv("CUDA_VISIBLE_DEVICES", saved.c_str(), 1);
  EXPECT_TRUE(has(e, "4 ranks on this host and 2 GPUs: NCCL runs one rank per GPU")) << e;
  e = error_of([] { rank_device("cuda:0", {1, 2}, 2, T::kNccl); });
  EXPECT_TRUE(has(e, "2 ranks on this host would share cuda:0, which NCCL refuses")) << e;
  e = error_of([] { rank_device("cuda", {0, 1}, 0, T::kHostStaged); });
  EXPECT_TRUE(has(e, "device cuda: no CUDA device is visible")) << e;
  e = error_of([] { rank_device("gpu0", {0, 1}, 1, T::kHostStaged); });
  EXPECT_TRUE(has(e, "expected \"cpu\", \"cuda\" or \"cuda:N\", got \"gpu0\"")) << e;
  e = error_of([] { parse_device_transport("mpi"); });
  EXPECT_TRUE(has(e, "device transport \"mpi\": expected \"nccl\" or \"staged\"")) << e;
  // A device past the last visible one (every device here without a GPU).
  e = error_of([] {
    device_communicator(local_communicator(), Device::cuda(cuda_device_count()), T::kHostStaged);
  });
  EXPECT_TRUE(has(e, "cuda:" + std::to_string(cuda_device_count()))) << e;
  e = error_of([] { device_communicator(local_communicator(), Device::cpu(), T::kNccl); });
  EXPECT_TRUE(has(e, "cpu is not a device")) << e;
}

// ---- On GPUs (the gpu.dist.* ctest entries; every test skips without a device) ----

// Skips the test unless this rank has a device world for the transport.
#define DEVICE_WORLD_OR_SKIP(name, transport)   \
  Communicator* name = device_world(transport); \
  if (!name) GTEST_SKIP() << "no CUDA device" << (cuda_device_count() ? " per rank for NCCL" : "")

// Every collective the layouts use, on device tensors, gives the host path's result; host
// tensors still go over the host; sub-groups keep the routing.
void expect_device_collectives_match_host(Communicator& d) {
  Communicator& c = world();
  const Device gpu = rank_gpu();
  const int r = c.rank(), n = c.size();
  EXPECT_TRUE(d.moves(gpu) && d.moves(Device::cpu()));
  const Tensor x = testing_random({5, 3}, 7 + static_cast<uint32_t>(r), 1.0);
  Tensor want = x.clone(), got = x.to(gpu);
  c.all_reduce_sum(want);
  d.all_reduce_sum(got);
  // NCCL's summation order is its own beyond 2 ranks.
  EXPECT_LE(max_relative_difference(got, want), 1e-6);
  EXPECT_EQ(max_relative_difference(d.all_gather(x.to(gpu)), c.all_gather(x)), 0.0);
  // Uneven all_to_all_v: rank r sends 1 + (r + p) % 3 rows to peer p.
  std::vector<int64_t> send_rows(n), recv_rows(n);
  int64_t rows = 0;
  for (int p = 0; p < n; ++p) {
    send_rows[p] = 1 + (r + p) % 3;
    recv_rows[p] = 1 + (p + r) % 3;
    rows += send_rows[p];
  }
  const Tensor send = testing_random({rows, 4}, 11 + static_cast<uint32_t>(r), 1.0);
  const Tensor moved = d.all_to_all_v(send.to(gpu), send_rows, recv_rows);
  EXPECT_EQ(moved.device(), gpu);
  EXPECT_EQ(max_relative_difference(moved, c.all_to_all_v(send, send_rows, recv_rows)), 0.0);
  Tensor b = x.to(gpu), b_host = x.clone();
  d.broadcast(b, n - 1);
  c.broadcast(b_host, n - 1);
  EXPECT_EQ(max_relative_difference(b, b_host), 0.0);
  Tensor counts = Tensor::from_vector<int64_t>({int64_t{1} << 40}, {1});  // stays on the host
  d.all_reduce_sum(counts);
  EXPECT_EQ(counts.data<int64_t>()[0], n * (int64_t{1} << 40));
  const std::unique_ptr<Communicator> half = d.split(r % 2, r);
  Tensor ones = Tensor::full({2}, DType::f32, 1.0).to(gpu);
  half->all_reduce_sum(ones);
  EXPECT_EQ(ones.to(Device::cpu()).item(0), static_cast<double>((n - r % 2 + 1) / 2));
  d.barrier();
}

TEST(DeviceStaged, CollectivesMatchTheHost) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kHostStaged);
  EXPECT_NE(d->backend().find("+staged"), std::string::npos) << d->backend();
  expect_device_collectives_match_host(*d);
}

TEST(DeviceStaged, DataParallelAllReduceMatchesOneProcess) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kHostStaged);
  expect_data_parallel_equals_single_process(true, Reduction::kAllReduce, *d, rank_gpu());
}

TEST(DeviceStaged, DataParallelRankOrderedIsBitForBit) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kHostStaged);
  expect_data_parallel_equals_single_process(true, Reduction::kRankOrdered, *d, rank_gpu());
}

TEST(DeviceStaged, StartedCollectivesAndOverlappedSmallBuckets) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kHostStaged);
  expect_started_collectives_match_blocking(*d, rank_gpu());
  expect_data_parallel_equals_single_process(true, Reduction::kRankOrdered, *d, rank_gpu(), 4096);
}

TEST(DeviceStaged, ExpertParallelTrainingMatchesOneProcess) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kHostStaged);
  expect_expert_parallel_training_matches(*d, *d, rank_gpu());
}

// dp x ep = 2 x 2 on the GPU (4 ranks).
TEST(DeviceStaged4, ExpertParallelWithDataParallelReplicas) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kHostStaged);
  if (d->size() != 4) GTEST_SKIP() << "needs 4 ranks";
  const std::unique_ptr<Communicator> experts = d->split(d->rank() / 2, d->rank() % 2);
  expect_expert_parallel_training_matches(*experts, *d, rank_gpu());
  expect_expert_parallel_training_matches(*experts, *d, rank_gpu(), 4096);
}

TEST(DeviceNccl, CollectivesMatchTheHost) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kNccl);
  EXPECT_NE(d->backend().find("+nccl"), std::string::npos) << d->backend();
  expect_device_collectives_match_host(*d);
}

TEST(DeviceNccl, DataParallelMatchesOneProcess) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kNccl);
  expect_data_parallel_equals_single_process(true, Reduction::kAllReduce, *d, rank_gpu());
  expect_data_parallel_equals_single_process(true, Reduction::kRankOrdered, *d, rank_gpu());
}

// NCCL's started collectives run on a side stream while the device's stream computes.
TEST(DeviceNccl, StartedCollectivesAndOverlappedSmallBuckets) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kNccl);
  expect_started_collectives_match_blocking(*d, rank_gpu());
  expect_data_parallel_equals_single_process(true, Reduction::kRankOrdered, *d, rank_gpu(), 4096);
  expect_data_parallel_equals_single_process(true, Reduction::kAllReduce, *d, rank_gpu(), 4096);
}

TEST(DeviceNccl, ExpertParallelTrainingMatchesOneProcess) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kNccl);
  expect_expert_parallel_training_matches(*d, *d, rank_gpu());
}

// ---- Distributed checkpoints ----

// A directory every rank names (rank 0 makes it), removed by rank 0 at the end.
struct SharedDirectory {
  std::string path;
  explicit SharedDirectory(Communicator& c) : comm(c) {
    std::string made;
    if (c.rank() == 0) {
      char tmpl[] = "/tmp/sw_dist_ckpt_XXXXXX";
      made = ::mkdtemp(tmpl);
    }
    path = broadcast_bytes(c, made, 0);
  }
  ~SharedDirectory() {
    comm.barrier();
    if (comm.rank() == 0) std::filesystem::remove_all(path);
  }
  Communicator& comm;
};

TEST(DistributedCheckpoint, EveryRankWritesItsShardsRankZeroTheManifest) {
  Communicator& c = world();
  SharedDirectory dir(c);
  Checkpoint mine;
  mine.step = 7;
  mine.model = preset("tiny");
  mine.seed = 3;
  // Rank r writes "t<r>" (r + 1 elements of value r) and its optimizer slot.
  const std::string name = "t" + std::to_string(c.rank());
  mine.parameters = {{name, Tensor::full({c.rank() + 1}, DType::f32, c.rank())}};
  mine.optimizer_state = {{name + "/v", Tensor::full({2}, DType::f64, 10 + c.rank())}};
  const std::string saved = save_checkpoint(c, dir.path, mine);
  EXPECT_EQ(saved, dir.path + "/step-00000007");
  const Checkpoint back = load_checkpoint(dir.path);
  EXPECT_EQ(back.step, 7);
  EXPECT_EQ(back.seed, 3u);
  ASSERT_EQ(back.parameters.size(), static_cast<size_t>(c.size()));
  ASSERT_EQ(back.optimizer_state.size(), static_cast<size_t>(c.size()));
  for (int r = 0; r < c.size(); ++r) {
    EXPECT_EQ(back.parameters[r].first, "t" + std::to_string(r));
    EXPECT_EQ(back.parameters[r].second.numel(), r + 1);
    EXPECT_EQ(back.parameters[r].second.item(r), r);
    EXPECT_EQ(back.optimizer_state[r].second.item(1), 10 + r);
  }
  EXPECT_TRUE(c.size() == 1 || std::filesystem::exists(saved + "/shard-rank1-00000.bin"));

  // A rank that fails (here: a tensor another rank also writes) fails the save on every
  // rank; the checkpoint saved before stays the latest and nothing else is left behind.
  if (c.size() > 1) {
    Checkpoint clash = mine;
    clash.step = 8;
    clash.parameters = {{"t0", Tensor::full({1}, DType::f32, 0)}};
    try {
      save_checkpoint(c, dir.path, clash);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("t0"), std::string::npos) << e.what();
    }
    c.barrier();
    EXPECT_EQ(latest_checkpoint(dir.path), saved);
    int entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path))
      entries += e.path().filename() != "latest";
    EXPECT_EQ(entries, 1);  // step-00000007 alone
  }
}

// ---- Model parallelism ----

TEST(ModelParallel, PartsRoundTrip) {
  Communicator& c = world();
  const Tensor full = testing_random({4, 6 * c.size(), 3}, 5, 1.0);
  for (int axis : {0, 1, 2}) {
    if (full.dim(axis) % c.size() != 0) continue;
    const Tensor part = take_part(full, {axis, c.size(), c.rank()});
    EXPECT_EQ(part.dim(axis), full.dim(axis) / c.size());
    const Tensor back = gather_parts(c, part, axis);
    ASSERT_EQ(back.shape(), full.shape());
    EXPECT_EQ(0, std::memcmp(back.raw(), full.raw(), full.nbytes())) << "axis " << axis;
  }
  EXPECT_EQ(state_split_axis("row", 2, 0), 0);  // wi: rows split, so are its row moments
  EXPECT_EQ(state_split_axis("col", 2, 0), -1);
  EXPECT_EQ(state_split_axis("row", 2, 1), -1);  // wo: columns split
  EXPECT_EQ(state_split_axis("col", 2, 1), 0);
  EXPECT_EQ(state_split_axis("m", 2, 1), 1);
}

// This rank's part of a single-process tensor named like a model-parallel one's (on the
// host).
Tensor part_of(const SwitchTransformer& sharded, const std::string& name, const Tensor& whole) {
  for (const auto& e : sharded.parameters().entries())
    if (e.name == name) return take_part(whole.to(Device::cpu()), e.split);
  ADD_FAILURE() << "no parameter " << name;
  return whole;
}

// Heads and d_ff split over a model-parallel group (`group`; the data-parallel replicas
// `replicas` each take one micro-batch of the global batch): every rank holds its part of
// each parameter as the single process initialised it, and the forward, the gradients,
// the decoding and three Adafactor steps (with dropout: the masks are the single
// process's) match it within 1e-5 (1e-4 for the parameters after the steps). On a GPU the
// one process runs on the same device (decoding is checked on the cpu only).
void expect_model_parallel_matches(Communicator& group, Communicator* replicas,
                                   ModelConfig::Activation activation,
                                   Communicator* experts = nullptr, Device device = Device::cpu()) {
  ModelConfig config = preset("tiny");
  config.set_activation(activation);
  const int64_t dp = replicas ? replicas->size() : 1;
  const Batch batch = global_batch(config, 2 * dp);
  const Batch mine = replicas ? shard_batch(batch, replicas->rank(), replicas->size()) : batch;
  TrainOptions options;
  options.schedule.kind = LearningRateSchedule::Kind::kConstant;
  // A step of 1e-3: Adafactor divides each update by its gradient's RMS, which turns the
  // last-bit differences of near-zero gradients (other summation orders here) into
  // differences of the update; they stay ~1e-5 of the weights at this rate.
  options.schedule.base = 1e-3;
  SwitchTransformer single_model(config, 11, DType::f32, device);
  Trainer single(single_model, options);
  SwitchTransformer sharded(config, 11, DType::f32, device, experts, &group);
  if (!experts) {
    ASSERT_EQ(sharded.parameters().entries().size(), single_model.parameters().entries().size());
  }
  int64_t split = 0;
  for (const auto& e : sharded.parameters().entries()) {
    const Tensor want = part_of(sharded, e.name, single_model.parameters().get(e.name));
    ASSERT_EQ(e.tensor.shape(), want.shape()) << e.name;
    EXPECT_EQ(0, std::memcmp(e.tensor.to(Device::cpu()).raw(), want.raw(), want.nbytes()))
        << e.name;
    split += !e.split.whole();
  }
  EXPECT_TRUE(group.size() == 1 || split > 0);
  // Eval forward (the whole batch) and cached decoding.
  const ForwardOutput a = single_model.forward(batch), b = sharded.forward(batch);
  EXPECT_LE(max_relative_difference(b.logits, a.logits), 1e-5);
  EXPECT_NEAR(b.loss, a.loss, 1e-5 * a.loss);
  if (device.is_cpu()) {
    DecoderState sa = single_model.start_decoding(batch.input_ids, Tensor());
    DecoderState sb = sharded.start_decoding(batch.input_ids, Tensor());
    Tensor tokens = Tensor::zeros({batch.input_ids.dim(0)}, DType::i32);
    for (int t = 0; t < 3; ++t) {
      const Tensor la = single_model.decode_step(sa, tokens), lb = sharded.decode_step(sb, tokens);
      EXPECT_LE(max_relative_difference(lb, la), 1e-5) << "decode step " << t;
      for (int64_t i = 0; i < tokens.numel(); ++i) tokens.data<int32_t>()[i] = 2 + t + i;
    }
  }
  options.data_parallel = replicas;
  options.expert_parallel = experts;
  Trainer trainer(sharded, options);
  TrainMetrics ma, mb;
  const auto want_grads = single.accumulate(split_micro_batches(batch, dp), ma);
  const auto got_grads = trainer.accumulate({mine}, mb);
  EXPECT_NEAR(mb.loss, ma.loss, 1e-5 * ma.loss);
  std::map<std::string, Tensor> want_by_name(want_grads.begin(), want_grads.end());
  for (const auto& [name, g] : got_grads)
    EXPECT_LE(max_relative_difference(g, part_of(sharded, name, want_by_name.at(name))), 1e-5)
        << name;
  for (int step = 0; step < 3; ++step) {
    const TrainMetrics x = single.step(split_micro_batches(batch, dp));
    const TrainMetrics y = trainer.step({mine});
    EXPECT_NEAR(y.loss, x.loss, 1e-5 * x.loss) << "step " << step;
    EXPECT_NEAR(y.grad_norm, x.grad_norm, 1e-5 * x.grad_norm) << "step " << step;
  }
  for (const auto& e : sharded.parameters().entries())
    EXPECT_LE(max_relative_difference(
                  e.tensor, part_of(sharded, e.name, single_model.parameters().get(e.name))),
              1e-4)
        << e.name;
}

TEST(ModelParallel, MatchesOneProcessRelu) {
  expect_model_parallel_matches(world(), nullptr, ModelConfig::RELU);
}

TEST(ModelParallel, MatchesOneProcessGatedGelu) {
  expect_model_parallel_matches(world(), nullptr, ModelConfig::GATED_GELU);
}

// dp x mp = 2 x 2: ranks 2i and 2i + 1 split the model, ranks i and i + 2 the batch.
TEST(ModelParallel, WithDataParallel) {
  Communicator& c = world();
  if (c.size() != 4) GTEST_SKIP() << "needs 4 ranks";
  const std::unique_ptr<Communicator> model = c.split(c.rank() / 2, c.rank() % 2);
  const std::unique_ptr<Communicator> replicas = c.split(c.rank() % 2, c.rank() / 2);
  expect_model_parallel_matches(*model, replicas.get(), ModelConfig::RELU);
}

// ep x mp = 2 x 2 (the layout's own groups): model groups {0, 1} and {2, 3} each hold half
// of the experts, each expert's d_ff split over the group, and take one batch shard each.
TEST(ModelParallel, WithExpertParallel) {
  Communicator& c = world();
  if (c.size() != 4) GTEST_SKIP() << "needs 4 ranks";
  ParallelLayout layout;
  layout.ep = layout.mp = 2;
  const ParallelCommunicators groups(c, layout);
  const ParallelGroups& g = groups.groups();
  expect_model_parallel_matches(*g.model_parallel, g.data_parallel, ModelConfig::GATED_GELU,
                                g.expert_parallel);
}

// The same on the GPU through the host-staged transport (several ranks share one GPU):
// mp = 2 (np 2), and dp x mp and ep x mp = 2 x 2 (np 4).
TEST(DeviceStaged, ModelParallelMatchesOneProcess) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kHostStaged);
  if (d->size() != 2) GTEST_SKIP() << "needs 2 ranks";
  expect_model_parallel_matches(*d, nullptr, ModelConfig::GATED_GELU, nullptr, rank_gpu());
}

TEST(DeviceStaged4, ModelParallelWithDataParallel) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kHostStaged);
  if (d->size() != 4) GTEST_SKIP() << "needs 4 ranks";
  const std::unique_ptr<Communicator> model = d->split(d->rank() / 2, d->rank() % 2);
  const std::unique_ptr<Communicator> replicas = d->split(d->rank() % 2, d->rank() / 2);
  expect_model_parallel_matches(*model, replicas.get(), ModelConfig::RELU, nullptr, rank_gpu());
}

TEST(DeviceStaged4, ModelParallelWithExpertParallel) {
  DEVICE_WORLD_OR_SKIP(d, DeviceTransport::kHostStaged);
  if (d->size() != 4) GTEST_SKIP() << "needs 4 ranks";
  ParallelLayout layout;
  layout.ep = layout.mp = 2;
  const ParallelCommunicators groups(*d, layout);
  const ParallelGroups& g = groups.groups();
  expect_model_parallel_matches(*g.model_parallel, g.data_parallel, ModelConfig::GATED_GELU,
                                g.expert_parallel, rank_gpu());
}

TEST(ModelParallel, RefusesWhatItCannotSplit) {
  Communicator& c = world();
  if (c.size() < 2) GTEST_SKIP() << "needs 2 ranks";
  ModelConfig config = preset("tiny");
  config.set_num_heads(c.size() + 1);
  try {
    SwitchTransformer model(config, 1, DType::f32, Device::cpu(), nullptr, &c);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_heads"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SwitchTransformer(preset("tiny"), 1, DType::f32, Device::cpu(), &c, &c), Error);
}

}  // namespace
}  // namespace sw

// Prints a rank's failed assertions, prefixed with the rank.
class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (r.failed())
      std::fprintf(stderr, "rank %d: %s:%d: %s\n", rank_, r.file_name() ? r.file_name() : "?",
                   r.line_number(), r.message());
  }

 private:
  int rank_;
};

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (sw::world().rank() != 0) {  // one report, from rank 0; the others' failures only
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new RankFailurePrinter(sw::world().rank()));
  }
  const int failed = RUN_ALL_TESTS();
  // Any rank's failure fails every rank, so mpirun's status says it.
  sw::Tensor status = sw::Tensor::from_vector<int32_t>({failed ? 1 : 0}, {1});
  sw::world().all_reduce_sum(status);
  return status.data<int32_t>()[0] ? 1 : 0;
}
