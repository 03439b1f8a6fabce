// Checkpoints: round trip, the latest pointer and retention, and every kind of damage a
// load must name — a flipped byte, a truncated or missing shard, a manifest that does not
// parse or comes from a newer format — with nothing restored when a check fails.
#include "core/io/checkpoint.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/data/byte_tokenizer.h"
#include "core/model/switch_transformer.h"
#include "core/tensor/error.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;

std::vector<std::pair<std::string, sw::Tensor>> named_parameters(const sw::SwitchTransformer& m) {
  std::vector<std::pair<std::string, sw::Tensor>> out;
  for (const auto& e : m.parameters().entries()) out.push_back({e.name, e.tensor});
  return out;
}

sw::Checkpoint make_checkpoint(const sw::SwitchTransformer& model, int64_t step) {
  sw::Checkpoint c;
  c.step = step;
  c.model = model.config();
  c.seed = 7;
  c.data = {2, 13};
  c.parameters = named_parameters(model);
  c.optimizer_state.push_back({"shared.weight/row", sw::Tensor::full({4}, sw::DType::f32, 0.5)});
  return c;
}

bool same_bytes(const sw::Tensor& a, const sw::Tensor& b) {
  return a.nbytes() == b.nbytes() && std::equal(static_cast<const char*>(a.raw()),
                                                static_cast<const char*>(a.raw()) + a.nbytes(),
                                                static_cast<const char*>(b.raw()));
}

using sw::testing::error_of;

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("sw_ckpt_" + std::to_string(::getpid()));
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }
  fs::path root_;
  sw::SwitchTransformer model_{sw::preset("tiny"), 3};
};

TEST_F(CheckpointTest, RoundTripsEveryByteAcrossShards) {
  sw::SaveOptions o;
  o.shard_bytes = 100000;  // several shards
  const std::string dir = sw::save_checkpoint(root_.string(), make_checkpoint(model_, 12), o);
  EXPECT_EQ(fs::path(dir).filename(), "step-00000012");
  int shards = 0;
  for (const auto& e : fs::directory_iterator(dir)) shards += e.path().extension() == ".bin";
  EXPECT_GT(shards, 3);
  const sw::Checkpoint c = sw::load_checkpoint(root_.string());  // through `latest`
  EXPECT_EQ(c.step, 12);
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(c.data, (sw::DataPosition{2, 13}));
  EXPECT_EQ(sw::config_to_text(c.model), sw::config_to_text(model_.config()));
  const auto params = named_parameters(model_);
  ASSERT_EQ(c.parameters.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(c.parameters[i].first, params[i].first);
    EXPECT_TRUE(same_bytes(c.parameters[i].second, params[i].second)) << params[i].first;
  }
  ASSERT_EQ(c.optimizer_state.size(), 1u);
  EXPECT_EQ(c.optimizer_state[0].first, "shared.weight/row");

  // Restoring into a differently seeded model makes it identical.
  sw::SwitchTransformer other(sw::preset("tiny"), 4);
  sw::restore_tensors(c.parameters, named_parameters(other), true, "parameter");
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_TRUE(same_bytes(named_parameters(other)[i].second, params[i].second));
}

// A top-2 model comes back top-2: the routing fields travel in the manifest's config, and
// the loaded model routes and computes as the saved one.
TEST_F(CheckpointTest, ATopTwoModelRoundTrips) {
  sw::ModelConfig c = sw::preset("tiny");
  c.set_num_selected_experts(2);
  c.set_normalize_gates(false);
  const sw::SwitchTransformer top2(c, 5);
  sw::save_checkpoint(root_.string(), make_checkpoint(top2, 1));
  const sw::SwitchTransformer back = sw::model_from_checkpoint(sw::load_checkpoint(root_.string()));
  EXPECT_EQ(back.config().num_selected_experts(), 2);
  EXPECT_FALSE(back.config().normalize_gates());
  const sw::Batch b = sw::make_continuation_batch("two experts per token", 2, 10, 5, c);
  const sw::ForwardOutput x = top2.forward(b), y = back.forward(b);
  EXPECT_TRUE(same_bytes(x.logits, y.logits));
  ASSERT_FALSE(y.routing.empty());
  EXPECT_EQ(y.routing[0].expert_index.dim(1), 2);
  EXPECT_EQ(y.routing[0].stats.choices, 2);
}

TEST_F(CheckpointTest, LatestMovesAndRetentionKeepsTheNewest) {
  for (int64_t step : {1, 2, 3, 4, 5}) {
    sw::SaveOptions o;
    o.keep_last = 2;
    sw::save_checkpoint(root_.string(), make_checkpoint(model_, step), o);
    EXPECT_EQ(fs::path(sw::latest_checkpoint(root_.string())).filename(),
              "step-0000000" + std::to_string(step));
  }
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(root_)) left.push_back(e.path().filename());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"latest", "step-00000004", "step-00000005"}));
  // A leftover of an interrupted save is cleaned up by the next one.
  const pid_t gone = ::fork();  // a process that has exited: its leftovers are abandoned
  if (gone == 0) ::_exit(0);
  ::waitpid(gone, nullptr, 0);
  const fs::path leftover = root_ / (".tmp-step-00000006-" + std::to_string(gone));
  fs::create_directory(leftover);
  sw::save_checkpoint(root_.string(), make_checkpoint(model_, 6));
  EXPECT_FALSE(fs::exists(leftover));
  // A save in progress in another live process is not touched.
  const fs::path in_progress = root_ / (".tmp-step-00000007-" + std::to_string(::getppid()));
  fs::create_directory(in_progress);
  sw::save_checkpoint(root_.string(), make_checkpoint(model_, 7));
  EXPECT_TRUE(fs::exists(in_progress));
  fs::remove_all(in_progress);
  // Saving a step again replaces it.
  sw::save_checkpoint(root_.string(), make_checkpoint(model_, 6));
  EXPECT_EQ(sw::load_checkpoint(root_.string()).step, 6);
}

TEST_F(CheckpointTest, DamageIsNamedAndNothingIsRestored) {
  const std::string dir = sw::save_checkpoint(root_.string(), make_checkpoint(model_, 1));
  const fs::path shard = fs::path(dir) / "shard-00000.bin";
  const std::string original = [&] {
    std::ifstream in(shard, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  auto write_shard = [&](const std::string& bytes) {
    std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
  };
  // A flipped byte inside the first tensor: its name and the shard are in the message.
  std::string flipped = original;
  flipped[5] ^= 0x40;
  write_shard(flipped);
  std::string e = error_of([&] { sw::load_checkpoint(dir); });
  EXPECT_NE(e.find("checksum mismatch"), std::string::npos) << e;
  EXPECT_NE(e.find(model_.parameters().entries()[0].name), std::string::npos) << e;
  EXPECT_NE(e.find("shard-00000.bin"), std::string::npos) << e;
  // Truncated.
  write_shard(original.substr(0, original.size() / 2));
  e = error_of([&] { sw::load_checkpoint(dir); });
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
  // Missing.
  fs::remove(shard);
  e = error_of([&] { sw::load_checkpoint(dir); });
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
  write_shard(original);
  EXPECT_NO_THROW(sw::load_checkpoint(dir));
  // A manifest that does not parse, and one from a newer format (written without the
  // manifest's checksum, as checkpoints from before it were, so the parser is reached).
  const fs::path manifest = fs::path(dir) / "manifest.pb";
  fs::remove(fs::path(dir) / "manifest.crc32c");
  const std::string good = [&] {
    std::ifstream in(manifest, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  std::ofstream(manifest, std::ios::binary | std::ios::trunc) << "\xff\xff\xff garbage";
  e = error_of([&] { sw::load_checkpoint(dir); });
  EXPECT_NE(e.find("does not parse"), std::string::npos) << e;
  sw::proto::Manifest newer;
  newer.ParseFromString(good);
  newer.set_format_version(sw::kCheckpointFormatVersion + 1);
  std::ofstream(manifest, std::ios::binary | std::ios::trunc) << newer.SerializeAsString();
  e = error_of([&] { sw::load_checkpoint(dir); });
  EXPECT_NE(e.find("format version"), std::string::npos) << e;
  // A shape the shard cannot hold is refused before anything is allocated.
  sw::proto::Manifest huge;
  huge.ParseFromString(good);
  huge.mutable_tensors(0)->clear_shape();
  huge.mutable_tensors(0)->add_shape(int64_t{1} << 40);
  huge.mutable_tensors(0)->add_shape(int64_t{1} << 40);
  std::ofstream(manifest, std::ios::binary | std::ios::trunc) << huge.SerializeAsString();
  e = error_of([&] { sw::load_checkpoint(dir); });
  EXPECT_NE(e.find(huge.tensors(0).name()), std::string::npos) << e;
  std::ofstream(manifest, std::ios::binary | std::ios::trunc) << good;

  // Restore: a wrong shape, a missing and an unexpected tensor each refuse, changing nothing.
  sw::Checkpoint c = sw::load_checkpoint(dir);
  sw::SwitchTransformer target(sw::preset("tiny"), 9);
  const sw::Tensor before = target.parameters().entries()[0].tensor.clone();
  auto wrong_shape = c.parameters;
  wrong_shape.back().second = sw::Tensor::zeros({3}, sw::DType::f32);
  e = error_of(
      [&] { sw::restore_tensors(wrong_shape, named_parameters(target), true, "parameter"); });
  EXPECT_NE(e.find(c.parameters.back().first), std::string::npos) << e;
  auto missing = c.parameters;
  missing.pop_back();
  e = error_of([&] { sw::restore_tensors(missing, named_parameters(target), true, "parameter"); });
  EXPECT_NE(e.find("missing"), std::string::npos) << e;
  auto unexpected = c.parameters;
  unexpected.push_back({"encoder.block.99.extra", sw::Tensor::zeros({1}, sw::DType::f32)});
  e = error_of(
      [&] { sw::restore_tensors(unexpected, named_parameters(target), true, "parameter"); });
  EXPECT_NE(e.find("unexpected parameter encoder.block.99.extra"), std::string::npos) << e;
  EXPECT_TRUE(same_bytes(target.parameters().entries()[0].tensor, before));
  // Partial: the unexpected and missing ones are ignored, the rest restored.
  sw::restore_tensors(unexpected, named_parameters(target), false, "parameter");
  EXPECT_TRUE(same_bytes(target.parameters().entries()[0].tensor, c.parameters[0].second));
}

// Every region of a checkpoint in turn (the manifest, its checksum, the start, middle and
// end of every tensor in every shard, the `latest` pointer): one flipped byte is an error
// naming the file, and the load writes nothing.
TEST_F(CheckpointTest, AFlippedByteAnywhereIsRefused) {
  sw::SaveOptions small_shards;
  small_shards.shard_bytes = 200000;  // several shards
  const std::string dir =
      sw::save_checkpoint(root_.string(), make_checkpoint(model_, 1), small_shards);
  auto read = [](const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  auto write = [](const fs::path& p, const std::string& bytes) {
    std::ofstream(p, std::ios::binary | std::ios::trunc) << bytes;
  };
  std::vector<fs::path> files = {root_ / "latest"};
  for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  ASSERT_GE(files.size(), 5u);  // latest, manifest, its checksum, two shards or more
  int flips = 0;
  for (const fs::path& file : files) {
    const std::string original = read(file);
    ASSERT_FALSE(original.empty()) << file;
    // Start, end and 14 places between (every tensor of a shard is hit: each has a CRC).
    std::vector<size_t> at = {0, original.size() - 1};
    for (size_t k = 1; k < 15; ++k) at.push_back(original.size() * k / 15);
    for (size_t i : at) {
      std::string flipped = original;
      flipped[i] ^= 0x20;
      write(file, flipped);
      const std::string e = error_of([&] { sw::load_checkpoint(root_.string()); });
      EXPECT_FALSE(e.empty()) << file << " byte " << i << " loaded without an error";
      // The error names the damaged file (a shard's name, the manifest, `latest`).
      EXPECT_NE(e.find(file.filename().string()), std::string::npos)
          << file << " byte " << i << ": " << e;
      EXPECT_EQ(read(file), flipped) << "the load changed " << file;
      ++flips;
    }
    write(file, original);
  }
  EXPECT_NO_THROW(sw::load_checkpoint(root_.string()));
  EXPECT_GE(flips, 80);
  RecordProperty("flips", flips);
}

// SIGKILL at random moments of a save, again and again: `latest` always names a complete
// checkpoint that loads and verifies, and leftovers go at the next save.
TEST_F(CheckpointTest, KilledSavesNeverLoseTheLatestCheckpoint) {
  sw::Checkpoint c = make_checkpoint(model_, 0);
  sw::SaveOptions o;
  o.keep_last = 2;
  o.shard_bytes = 1 << 20;
  const sw::RandomStream delays(11, sw::RandomPurpose::kData, 9, 0);
  int64_t step = 0, loaded = 0, interrupted = 0;
  for (int round = 0; round < 40; ++round) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {  // save forever, a new step each time (and now and then the same one)
      for (int64_t s = step + 1;; ++s) {
        c.step = s % 5 == 0 ? s - 1 : s;
        sw::save_checkpoint(root_.string(), c, o);
      }
    }
    ::usleep(2000 + delays.bits(round) % 30000);
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the saving child died on its own";
    for (const auto& e : fs::directory_iterator(root_))
      if (e.path().filename().string().rfind(".tmp-", 0) == 0) {
        ++interrupted;  // killed in the middle of a save
        break;
      }
    if (!fs::exists(root_ / "latest")) continue;  // killed before the first save finished
    const sw::Checkpoint back = sw::load_checkpoint(root_.string());  // throws if damaged
    EXPECT_EQ(back.parameters.size(), c.parameters.size());
    step = back.step + 1000;
    ++loaded;
  }
  EXPECT_GT(loaded, 20);
  EXPECT_GT(interrupted, 5) << "the kills should land inside saves";
  sw::save_checkpoint(root_.string(), c, o);
  for (const auto& e : fs::directory_iterator(root_))
    EXPECT_NE(e.path().filename().string().rfind(".tmp-", 0), 0u) << e.path();
}

TEST_F(CheckpointTest, NoCheckpointIsNotFound) {
  fs::create_directories(root_);
  EXPECT_NE(error_of([&] { sw::load_checkpoint(root_.string()); }).find("no manifest.pb"),
            std::string::npos);
  EXPECT_THROW(sw::latest_checkpoint(root_.string()), sw::Error);
}

}  // namespace
