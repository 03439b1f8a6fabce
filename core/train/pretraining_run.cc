#include "core/train/pretraining_run.h"

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/dist/data_parallel.h"
#include "core/io/checkpoint.h"
#include "core/model/upcycle.h"
#include "core/tensor/error.h"

namespace sw {
namespace {

nlohmann::json layer_json(const LayerLoad& l) {
  int64_t tokens = 0;
  for (int64_t n : l.tokens_per_expert) tokens += n;
  std::vector<double> load;
  for (int64_t n : l.tokens_per_expert)
    load.push_back(tokens ? static_cast<double>(n) / static_cast<double>(tokens) : 0.0);
  return {{"stack", stack_name(l.stack)},
          {"block", l.block},
          {"load", load},
          {"dropped", l.dropped_fraction},
          {"entropy", l.router_entropy}};
}

// A checkpoint continues only the run that wrote it: every setting that shapes the data,
// the model or the updates must match (steps, intervals, logging and the cut of a step
// into micro-batches may change).
void check_same_run(const TrainConfig& saved, const TrainConfig& now) {
  auto essentials = [](TrainConfig c) {
    c.clear_steps();
    c.clear_eval_interval();
    c.clear_eval_batches();
    c.clear_log_interval();
    c.clear_checkpoint_interval();
    c.clear_keep_checkpoints();
    c.clear_collapse_warning_share();
    // How a step is cut (micro-batches, like the parallel layout) may change; what is
    // computed may not.
    c.clear_micro_batches();
    c.clear_tokenizer_model();  // resume reads the run's own tokenizer.model
    c.clear_init_from();        // only a fresh run reads it
    c.clear_device();           // a run continues on any device
    return train_config_to_text(c);
  };
  std::istringstream a(essentials(saved)), b(essentials(now));
  for (std::string x, y; std::getline(a, x) && std::getline(b, y);)
    SW_CHECK(x == y, Status::kInvalidArgument, "resume: the checkpoint was trained with ", x,
             ", this config says ", y);
}

// Resuming at step n: lines of later steps (logged after the checkpoint) would repeat.
void drop_metrics_after(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept;
  for (std::string line; std::getline(in, line);) {
    try {
      if (nlohmann::json::parse(line).value("step", int64_t{0}) > step) continue;
    } catch (const nlohmann::json::exception&) {
      continue;  // a line cut short by the crash
    }
    kept += line + "\n";
  }
  in.close();
  std::ofstream(path + ".tmp", std::ios::trunc) << kept;
  SW_CHECK(std::rename((path + ".tmp").c_str(), path.c_str()) == 0, Status::kIo,
           "resume: cannot rewrite ", path);
}

}  // namespace

std::string metrics_json(const TrainMetrics& m) {
  nlohmann::json j = {{"kind", "train"},
                      {"step", m.step},
                      {"loss", m.loss},
                      {"ce", m.ce},
                      {"target", m.target},
                      {"aux", m.aux},
                      {"z", m.z},
                      {"grad_norm", m.grad_norm},
                      {"lr", m.learning_rate},
                      {"tokens", m.tokens},
                      {"seconds", m.seconds},
                      {"tokens_per_s", m.seconds > 0 ? m.tokens / m.seconds : 0.0},
                      {"dropped", m.dropped_fraction},
                      {"skipped", m.skipped}};
  j["layers"] = nlohmann::json::array();
  for (const LayerLoad& l : m.layers) j["layers"].push_back(layer_json(l));
  return j.dump();
}

std::string metrics_json(const EvalMetrics& m, int64_t step) {
  return nlohmann::json({{"kind", "eval"},
                         {"step", step},
                         {"loss", m.loss},
                         {"ce", m.ce},
                         {"aux", m.aux},
                         {"z", m.z},
                         {"dropped", m.dropped_fraction},
                         {"tokens", m.tokens}})
      .dump();
}

TensorBoardSummary metrics_summary(const TrainMetrics& m) {
  TensorBoardSummary s;
  s.scalars = {{"train/loss", m.loss},
               {"train/ce", m.ce},
               {"train/target", m.target},
               {"train/aux", m.aux},
               {"train/z", m.z},
               {"train/grad_norm", m.grad_norm},
               {"train/lr", m.learning_rate},
               {"train/tokens_per_s", m.seconds > 0 ? m.tokens / m.seconds : 0.0},
               {"train/dropped", m.dropped_fraction}};
  for (const LayerLoad& l : m.layers) {
    const std::string layer = std::string(stack_name(l.stack)) + "." + std::to_string(l.block);
    s.scalars.push_back({"router/" + layer + "/entropy", l.router_entropy});
    s.scalars.push_back({"router/" + layer + "/dropped", l.dropped_fraction});
    s.counts.push_back({"load/" + layer, l.tokens_per_expert});
  }
  return s;
}

TensorBoardSummary metrics_summary(const EvalMetrics& m) {
  TensorBoardSummary s;
  s.scalars = {{"eval/loss", m.loss},
               {"eval/ce", m.ce},
               {"eval/aux", m.aux},
               {"eval/z", m.z},
               {"eval/dropped", m.dropped_fraction}};
  return s;
}

PretrainingRun::PretrainingRun(const TrainConfig& config, const std::string& out_dir, bool resume,
                               const ParallelGroups& groups)
    : config_(config),
      out_dir_(out_dir),
      groups_(groups),
      writer_((!groups.data_parallel || groups.data_parallel->rank() == 0) &&
              (!groups.model_parallel || groups.model_parallel->rank() == 0)) {
  validate(config_);
  // Before any data is prepared: a device that is not here fails at once.
  const Device device = Device::parse(config_.device());
  require_device(device);
  for (Communicator* group : {groups.data_parallel, groups.expert_parallel, groups.model_parallel})
    SW_CHECK(!group || group->size() <= 1 || group->moves(device), Status::kUnsupported,
             "train: device ", device.str(), " with ", group->size(), " ranks: the ",
             group->backend(),
             " communicator moves host tensors only; several GPUs need one that moves device "
             "tensors (switch train --comm nccl or --comm staged)");
  const int64_t replicas = groups.data_parallel ? groups.data_parallel->size() : 1;
  SW_CHECK_ARG(config_.batch_size() % (replicas * config_.micro_batches()) == 0, "batch_size ",
               config_.batch_size(), " does not split into ", replicas, " replicas x ",
               config_.micro_batches(), " micro-batches");
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  SW_CHECK(!ec, Status::kIo, "train: cannot create ", out_dir, ": ", ec.message());
  const bool resuming =
      resume && std::filesystem::exists(std::filesystem::path(checkpoint_root()) / "latest");
  SW_CHECK(
      resuming || !std::filesystem::exists(std::filesystem::path(checkpoint_root()) / "latest"),
      Status::kInvalidArgument, "train: ", out_dir,
      " already holds a run's checkpoints; continue it with --resume or use another --out");
  if (resuming && config_.tokenizer_model().empty())
    config_.set_tokenizer_model(out_dir + "/tokenizer.model");

  data_ = std::make_unique<PretrainingPipeline>(config_);
  if (!resuming && writer_) data_->tokenizer().save(out_dir + "/tokenizer.model");
  *config_.mutable_model() = resolve_model(config_, data_->tokenizer().vocab_size());
  eval_batches_ = data_->eval_batches(config_.model());
  model_ = std::make_unique<SwitchTransformer>(config_.model(), config_.seed(), DType::f32, device,
                                               groups.expert_parallel, groups.model_parallel);
  shares_ = std::make_unique<ModelShares>(*model_, groups);
  TrainOptions options = train_options(config_);
  options.data_parallel = groups.data_parallel;
  options.expert_parallel = groups.expert_parallel;
  if (!config_.distill_teacher().empty()) {
    SW_CHECK(!groups.expert_parallel && !groups.model_parallel, Status::kUnsupported,
             "distill_teacher: distillation runs in one process or data parallel (the whole "
             "teacher on every rank), not with expert or model parallelism");
    teacher_ = std::make_unique<SwitchTransformer>(
        model_from_checkpoint(load_checkpoint(config_.distill_teacher())));
    options.teacher = teacher_.get();
    if (!resuming && config_.distill_init_from_teacher()) init_from_teacher(*teacher_, *model_);
  }
  if (!resuming && !config_.init_from().empty()) {
    // Every parameter from the checkpoint, this rank's share of it (strict: a model of
    // another shape is refused by name before anything is copied).
    const Checkpoint start = load_checkpoint(config_.init_from());
    restore_tensors(shares_->parameters_from(start.parameters), named_parameters(), true,
                    "init_from " + config_.init_from() + ": parameter");
  }
  trainer_ = std::make_unique<Trainer>(*model_, options);

  if (resuming) {
    const Checkpoint saved = load_checkpoint(checkpoint_root());
    SW_CHECK(config_to_text(saved.model) == config_to_text(config_.model()),
             Status::kInvalidArgument, "resume: the checkpoint under ", checkpoint_root(),
             " holds another model than this config's (", saved.model.name(), ")");
    SW_CHECK(saved.seed == config_.seed(), Status::kInvalidArgument,
             "resume: the checkpoint's seed ", saved.seed, " is not the config's ", config_.seed());
    check_same_run(saved.train, config_);
    data_->train_data().check_position(saved.data);
    // The checkpoint holds the whole model; this rank takes its share.
    restore_tensors(shares_->parameters_from(saved.parameters), named_parameters(), true,
                    "parameter");
    trainer_->restore(saved.step, shares_->state_from(saved.optimizer_state));
    data_->train_data().set_position(saved.data);
  }
  if (!writer_) return;
  std::ofstream(out_dir + "/train_config.textproto") << train_config_to_text(config_);
  if (resuming) drop_metrics_after(out_dir + "/metrics.jsonl", steps_done());
  metrics_.open(out_dir + "/metrics.jsonl", resuming ? std::ios::app : std::ios::trunc);
  SW_CHECK(metrics_, Status::kIo, "train: cannot write ", out_dir, "/metrics.jsonl");
  // A resumed run drops, in TensorBoard, what an earlier process logged after the checkpoint.
  events_ = std::make_unique<TensorBoardWriter>(out_dir, steps_done() + 1);
}

TrainMetrics PretrainingRun::step() {
  Batch batch = data_->next_batch(config_.model());  // the global batch, on every rank
  if (groups_.data_parallel)
    batch = shard_batch(batch, groups_.data_parallel->rank(), groups_.data_parallel->size());
  const TrainMetrics m = trainer_->step(split_micro_batches(batch, config_.micro_batches()));
  if (writer_) {
    metrics_ << metrics_json(m) << '\n' << std::flush;
    events_->write(m.step, metrics_summary(m));
  }
  return m;
}

std::vector<std::pair<std::string, Tensor>> PretrainingRun::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& e : model_->parameters().entries()) out.push_back({e.name, e.tensor});
  return out;
}

std::string PretrainingRun::save_checkpoint() {
  Checkpoint c;
  c.step = steps_done();
  c.model = config_.model();
  c.train = config_;
  c.seed = config_.seed();
  c.data = data_->train_data().position();
  SaveOptions o;
  o.keep_last = config_.keep_checkpoints();
  return shares_->save(std::move(c), named_parameters(), trainer_->optimizer().state(),
                       checkpoint_root(), o);
}

EvalMetrics PretrainingRun::evaluate() {
  const EvalMetrics e = trainer_->evaluate(eval_batches_);
  if (writer_) {
    metrics_ << metrics_json(e, steps_done()) << '\n' << std::flush;
    events_->write(steps_done(), metrics_summary(e));
  }
  return e;
}

}  // namespace sw
