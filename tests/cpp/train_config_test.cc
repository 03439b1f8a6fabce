// TrainConfig: text, overrides, validation, the model it resolves to; and a short
// pre-training run end to end (tokenizer, packed data, steps, evaluation, metrics file).
#include "core/train/train_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/data/sentencepiece_tokenizer.h"
#include "core/io/checkpoint.h"
#include "core/model/upcycle.h"
#include "core/tensor/error.h"
#include "core/train/pretraining_run.h"
#include "test_util.h"

namespace {

using sw::testing::error_of;

TEST(TrainConfig, OverridesReachScalarsEnumsStringsAndTheModel) {
  sw::TrainConfig c;
  sw::apply_override(c, "steps=250");
  sw::apply_override(c, "optimizer=ADAMW");
  sw::apply_override(c, "corpus=/tmp/some text.txt");
  sw::apply_override(c, "model.num_experts=16");
  sw::apply_override(c, "model.name=my-model");
  EXPECT_EQ(c.steps(), 250);
  EXPECT_EQ(c.optimizer(), sw::TrainConfig::ADAMW);
  EXPECT_EQ(c.corpus(), "/tmp/some text.txt");
  EXPECT_EQ(c.model().num_experts(), 16);
  const sw::TrainConfig again = sw::train_config_from_text(sw::train_config_to_text(c));
  EXPECT_EQ(sw::train_config_to_text(again), sw::train_config_to_text(c));

  EXPECT_NE(error_of([&] { sw::apply_override(c, "nosuch=1"); }).find("no field \"nosuch\""),
            std::string::npos);
  EXPECT_NE(error_of([&] { sw::apply_override(c, "steps=many"); }).find("steps=many"),
            std::string::npos);
  EXPECT_NE(error_of([&] { sw::apply_override(c, "steps"); }).find("key=value"), std::string::npos);
  EXPECT_NE(error_of([&] { sw::apply_override(c, "steps.x=1"); }).find("not a message"),
            std::string::npos);
  // A rejected override leaves the config as it was.
  EXPECT_NE(error_of([&] { sw::apply_override(c, "batch_size=0"); }).find("batch_size"),
            std::string::npos);
  EXPECT_EQ(c.batch_size(), 16);
}

TEST(TrainConfig, ValidationNamesTheField) {
  EXPECT_NE(error_of([] {
              sw::train_config_from_text("micro_batches: 3");
            }).find("micro_batches: must divide batch_size 16, got 3"),
            std::string::npos);
  EXPECT_NE(error_of([] { sw::train_config_from_text("learning_rate: -1"); }).find("learning_rate"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              sw::train_config_from_text("schedule: WARMUP_COSINE warmup_steps: 5000");
            }).find("total_steps"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              sw::train_config_from_text("device: \"gpu\"");
            }).find("device: expected \"cpu\", \"cuda\" or \"cuda:N\", got \"gpu\""),
            std::string::npos);
  EXPECT_EQ(sw::train_config_from_text("device: \"cuda:1\"").device(), "cuda:1");
  // Distillation's settings without a teacher would be ignored: refused by name.
  EXPECT_NE(error_of([] {
              sw::train_config_from_text("distill_teacher_weight: 0.5");
            }).find("distill_teacher_weight: is set to 0.5 but distill_teacher is empty"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              sw::train_config_from_text("distill_init_from_teacher: false");
            }).find("distill_init_from_teacher"),
            std::string::npos);
  EXPECT_EQ(sw::train_config_from_text("distill_teacher: \"t\" distill_teacher_weight: 0.5")
                .distill_teacher_weight(),
            0.5);
  EXPECT_NE(error_of([] {
              sw::train_config_from_text("tokenizer_character_coverage: 0");
            }).find("tokenizer_character_coverage: must be in (0, 1], got 0"),
            std::string::npos);
  EXPECT_EQ(sw::TrainConfig().device(), "cpu");
  EXPECT_NE(error_of([] { sw::train_config_from_text("steps: 10\nbogus: 1"); }).find("line 2"),
            std::string::npos);  // The embedded model is validated with the train config (preset +
                                 // overrides).
  for (const auto& [config_text, expected] : std::vector<std::pair<std::string, std::string>>{
           {"model { d_model: -1 }", "d_model: must be >= 1, got -1"},
           {"model { num_experts: 0 }", "num_experts: must be >= 1, got 0"},
           {"model { train_capacity_factor: nan }", "train_capacity_factor: must be finite"},
           {"model_preset: \"nope\"", "preset \"nope\" is not known"}}) {
    const std::string text = config_text;  // a lambda cannot capture a structured binding
    const std::string error = error_of([&] { sw::train_config_from_text(text); });
    EXPECT_NE(error.find(expected), std::string::npos) << text << ": " << error;
    EXPECT_NE(error.find("model (preset"), std::string::npos) << text << ": " << error;
  }
}

TEST(TrainConfig, TheModelTakesTheTokenizersPaddedVocabulary) {
  sw::TrainConfig c;
  sw::apply_override(c, "model.num_experts=4");
  const sw::ModelConfig m = sw::resolve_model(c, 2100);
  EXPECT_EQ(m.vocab_size(), 2176);
  EXPECT_EQ(m.num_experts(), 4);
  EXPECT_EQ(m.d_model(), sw::preset("tiny").d_model());
  sw::apply_override(c, "model.vocab_size=1000");
  EXPECT_NE(error_of([&] { sw::resolve_model(c, 2100); }).find("model.vocab_size"),
            std::string::npos);
}

TEST(PretrainingRun, TrainsEvaluatesAndWritesMetricsDeterministically) {
  std::string why;
  if (!sw::sentencepiece_available(&why)) GTEST_SKIP() << why;
  sw::TrainConfig c;
  for (const char* o : {"corpus=/usr/share/common-licenses/GPL-3", "tokenizer_vocab_size=400",
                        "steps=3", "batch_size=4", "micro_batches=2", "input_length=32",
                        "target_length=12", "eval_batches=1", "validation_fraction=0.1"})
    sw::apply_override(c, o);
  const std::string dir = ::testing::TempDir() + "sw_pretraining_run";
  std::filesystem::remove_all(dir);
  std::vector<double> losses[2];
  for (int attempt = 0; attempt < 2; ++attempt) {
    sw::PretrainingRun run(c, dir);
    EXPECT_EQ(run.config().model().vocab_size(), 512);  // 400 + 100 sentinels, padded
    const double before = run.evaluate().loss;
    for (int s = 0; s < 3; ++s) {
      const sw::TrainMetrics m = run.step();
      EXPECT_EQ(m.step, s + 1);
      EXPECT_EQ(m.layers.size(), 4u);  // tiny: 2 sparse blocks per stack
      EXPECT_GT(m.layers[0].router_entropy, 0);
      losses[attempt].push_back(m.loss);
    }
    const sw::EvalMetrics after = run.evaluate();
    EXPECT_TRUE(std::isfinite(after.loss));
    EXPECT_LT(after.loss, before);
    EXPECT_EQ(run.data().train_data().position().example, 12);
  }
  EXPECT_EQ(losses[0], losses[1]);  // same seed, same run, bit for bit
  std::ifstream metrics(dir + "/metrics.jsonl");
  int lines = 0, evals = 0;
  for (std::string line; std::getline(metrics, line); ++lines)
    evals += line.find("\"kind\":\"eval\"") != std::string::npos;
  EXPECT_EQ(lines, 5);
  EXPECT_EQ(evals, 2);
  EXPECT_TRUE(std::filesystem::exists(dir + "/tokenizer.model"));
  const sw::TrainConfig written = [&] {
    std::ifstream in(dir + "/train_config.textproto");
    return sw::train_config_from_text(std::string(std::istreambuf_iterator<char>(in), {}));
  }();
  EXPECT_EQ(written.model().vocab_size(), 512);
  std::filesystem::remove_all(dir);
}

sw::TrainConfig small_run_config() {
  sw::TrainConfig c;
  for (const char* o : {"corpus=/usr/share/common-licenses/GPL-3", "tokenizer_vocab_size=400",
                        "steps=4", "batch_size=4", "input_length=32", "target_length=12",
                        "eval_batches=1", "validation_fraction=0.1"})
    sw::apply_override(c, o);
  return c;
}

std::vector<std::string> parameter_bytes(const sw::SwitchTransformer& m) {
  std::vector<std::string> out;
  for (const auto& e : m.parameters().entries())
    out.emplace_back(static_cast<const char*>(e.tensor.raw()), e.tensor.nbytes());
  return out;
}

// Dropout, expert dropout and jitter are on (the tiny preset's rates), so every random
// stream must continue where it stopped.
TEST(PretrainingRun, ResumeIsBitIdenticalToRunningStraight) {
  std::string why;
  if (!sw::sentencepiece_available(&why)) GTEST_SKIP() << why;
  const sw::TrainConfig c = small_run_config();
  ASSERT_GT(sw::preset("tiny").dropout_rate(), 0);
  ASSERT_GT(sw::preset("tiny").router_jitter_eps(), 0);
  const std::string straight_dir = ::testing::TempDir() + "sw_run_straight",
                    resumed_dir = ::testing::TempDir() + "sw_run_resumed";
  std::filesystem::remove_all(straight_dir);
  std::filesystem::remove_all(resumed_dir);
  std::vector<double> straight_losses, resumed_losses;
  std::vector<std::string> straight_params;
  {
    sw::PretrainingRun run(c, straight_dir);
    for (int s = 0; s < 4; ++s) straight_losses.push_back(run.step().loss);
    straight_params = parameter_bytes(run.model());
  }
  {
    sw::PretrainingRun run(c, resumed_dir, true);  // nothing to resume yet: a fresh start
    for (int s = 0; s < 2; ++s) resumed_losses.push_back(run.step().loss);
    run.save_checkpoint();
    run.step();  // logged after the checkpoint, then "killed": resume drops this line
  }
  // A fresh run would overwrite the tokenizer and metrics of the saved one: refused.
  EXPECT_NE(error_of([&] { sw::PretrainingRun(c, resumed_dir); }).find("--resume"),
            std::string::npos);
  // Settings that shape the data must match the checkpoint's.
  sw::TrainConfig noisier = c;
  sw::apply_override(noisier, "noise_density=0.3");
  EXPECT_NE(error_of([&] { sw::PretrainingRun(noisier, resumed_dir, true); }).find("noise_density"),
            std::string::npos);
  sw::PretrainingRun run(c, resumed_dir, true);
  EXPECT_EQ(run.steps_done(), 2);
  for (int s = 0; s < 2; ++s) resumed_losses.push_back(run.step().loss);
  EXPECT_EQ(resumed_losses, straight_losses);
  EXPECT_EQ(parameter_bytes(run.model()), straight_params);
  std::ifstream metrics(resumed_dir + "/metrics.jsonl");
  std::vector<std::string> steps;
  for (std::string line; std::getline(metrics, line);)
    if (line.find("\"kind\":\"train\"") != std::string::npos)
      steps.push_back(line.substr(line.find("\"step\":"), 9));
  EXPECT_EQ(steps,
            (std::vector<std::string>{"\"step\":1,", "\"step\":2,", "\"step\":3,", "\"step\":4,"}));

  sw::TrainConfig other = c;
  sw::apply_override(other, "model.num_experts=4");
  EXPECT_NE(error_of([&] { sw::PretrainingRun(other, resumed_dir, true); }).find("another model"),
            std::string::npos);
  std::filesystem::remove_all(straight_dir);
  std::filesystem::remove_all(resumed_dir);
}

// init_from: a dense run, upcycled (every expert its block's FFN), starts a Switch run with
// exactly those weights; a checkpoint of another shape is refused by name, and a resumed
// run keeps its own weights.
TEST(PretrainingRun, StartsFromAnUpcycledCheckpoint) {
  std::string why;
  if (!sw::sentencepiece_available(&why)) GTEST_SKIP() << why;
  const std::string root = ::testing::TempDir() + "sw_run_init_from";
  std::filesystem::remove_all(root);
  sw::TrainConfig dense_config = small_run_config();
  sw::apply_override(dense_config, "model.encoder_sparse_step=0");
  sw::apply_override(dense_config, "model.decoder_sparse_step=0");
  {
    sw::PretrainingRun dense(dense_config, root + "/dense");
    dense.step();
    dense.save_checkpoint();
  }
  const sw::SwitchTransformer trained =
      sw::model_from_checkpoint(sw::load_checkpoint(root + "/dense/checkpoints"));
  sw::TrainConfig sparse_config = small_run_config();
  sw::apply_override(sparse_config, "tokenizer_model=" + root + "/dense/tokenizer.model");
  sw::ModelConfig sparse_model = trained.config();
  sparse_model.set_num_experts(sw::preset("tiny").num_experts());
  sparse_model.set_encoder_sparse_step(sw::preset("tiny").encoder_sparse_step());
  sparse_model.set_decoder_sparse_step(sw::preset("tiny").decoder_sparse_step());
  const sw::SwitchTransformer upcycled = sw::upcycle(trained, sparse_model, 3);
  sw::Checkpoint saved;
  saved.model = upcycled.config();
  saved.seed = upcycled.seed();
  for (const auto& e : upcycled.parameters().entries())
    saved.parameters.push_back({e.name, e.tensor});
  sw::save_checkpoint(root + "/upcycled", saved);

  sw::apply_override(sparse_config, "init_from=" + root + "/upcycled");
  {
    sw::PretrainingRun run(sparse_config, root + "/sparse");
    EXPECT_EQ(parameter_bytes(run.model()), parameter_bytes(upcycled));
    EXPECT_TRUE(std::isfinite(run.step().loss));
    run.save_checkpoint();
  }
  // Resumed, the run's own checkpoint wins over init_from.
  {
    sw::PretrainingRun run(sparse_config, root + "/sparse", true);
    EXPECT_EQ(run.steps_done(), 1);
    EXPECT_NE(parameter_bytes(run.model()), parameter_bytes(upcycled));
  }
  // The dense checkpoint does not fit the Switch model: named, nothing trained.
  sw::TrainConfig wrong = sparse_config;
  sw::apply_override(wrong, "init_from=" + root + "/dense/checkpoints");
  const std::string error = error_of([&] { sw::PretrainingRun(wrong, root + "/wrong"); });
  EXPECT_NE(error.find("init_from"), std::string::npos) << error;
  EXPECT_NE(error.find("router.classifier.weight is missing"), std::string::npos) << error;
  // With a teacher, one of the two starts must give way.
  sw::TrainConfig both = sparse_config;
  EXPECT_NE(error_of([&] {
              sw::apply_override(both, "distill_teacher=" + root + "/dense/checkpoints");
            }).find("distill_init_from_teacher: false"),
            std::string::npos);
  std::filesystem::remove_all(root);
}

}  // namespace
