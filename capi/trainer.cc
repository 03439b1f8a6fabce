// sw_trainer: optimizer steps on caller batches or the built-in span-corruption data,
// evaluation, and checkpoints that a later process continues bit for bit.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "capi/internal.h"
#include "core/dist/data_parallel.h"
#include "core/dist/device_communicator.h"
#include "core/io/checkpoint.h"
#include "core/model/upcycle.h"
#include "core/train/pretraining_run.h"  // metrics_summary

namespace sw::capi {
namespace {

sw_trainer& trainer_arg(sw_trainer* t) {
  sw_trainer& trainer = deref(t, "trainer");
  SW_CHECK(trainer.model && trainer.trainer, Status::kInternal, "trainer: empty handle");
  return trainer;
}

// The built-in data, prepared on first use (the tokenizer may be trained then).
PretrainingPipeline& pipeline(sw_trainer& t) {
  if (!t.data) {
    TrainConfig config = t.config;
    if (config.tokenizer_model().empty()) config.set_tokenizer_model(t.tokenizer_path);
    auto data = std::make_unique<PretrainingPipeline>(config);
    data->check_model(t.model->model.config());
    data->train_data().set_position(t.resume_position);
    t.eval_batches = data->eval_batches(t.model->model.config());
    t.data = std::move(data);
  }
  return *t.data;
}

// The fields a training step and an evaluation share.
template <typename M>
sw_metrics losses_of(const M& m, int64_t step) {
  sw_metrics out{};
  out.step = step;
  out.loss = m.loss;
  out.ce = m.ce;
  out.aux = m.aux;
  out.z = m.z;
  out.dropped_fraction = m.dropped_fraction;
  out.tokens = m.tokens;
  return out;
}

sw_metrics to_metrics(const EvalMetrics& m, int64_t step) { return losses_of(m, step); }

sw_metrics to_metrics(const TrainMetrics& m) {
  sw_metrics out = losses_of(m, m.step);
  out.grad_norm = m.grad_norm;
  out.learning_rate = m.learning_rate;
  out.seconds = m.seconds;
  out.tokens_per_second = m.seconds > 0 ? static_cast<double>(m.tokens) / m.seconds : 0.0;
  out.skipped = m.skipped ? 1 : 0;
  out.skipped_steps = m.skipped_steps;
  return out;
}

// A checkpoint's root: the folder above a step directory, or the path itself.
std::filesystem::path checkpoint_root_of(const std::string& path) {
  const std::filesystem::path p(path);
  return std::filesystem::exists(p / "manifest.pb") ? p.parent_path() : p;
}

std::vector<std::pair<std::string, Tensor>> named_parameters(const SwitchTransformer& model) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& e : model.parameters().entries()) out.push_back({e.name, e.tensor});
  return out;
}

// world's ranks for a trainer whose model is on a GPU: host tensors over world, device
// tensors by `transport` (core/dist/device_communicator.h; collective). NCCL runs one rank
// per GPU, so two ranks of one host on the same GPU are refused, naming them.
std::shared_ptr<Communicator> device_world(Communicator& world, Device device,
                                           DeviceTransport transport) {
  char host[256] = {};
  SW_CHECK(gethostname(host, sizeof host - 1) == 0, Status::kIo, "gethostname failed");
  const std::vector<std::string> places =
      all_gather_bytes(world, std::string(host) + " " + device.str());
  for (int a = 0; a < world.size() && transport == DeviceTransport::kNccl; ++a)
    for (int b = 0; b < a; ++b)
      SW_CHECK_ARG(places[a] != places[b], "ranks ", b, " and ", a, " both train on ",
                   places[a].substr(places[a].rfind(' ') + 1), " of host ",
                   places[a].substr(0, places[a].rfind(' ')),
                   ", which NCCL refuses: give each rank's model its own GPU, or set "
                   "device_transport: STAGED in the train config");
  return device_communicator(world.split(0, world.rank()), device, transport);
}

// Lays a trainer out over world's ranks (collective). With experts or heads split, the
// trainer's model becomes this rank's share of a copy of the whole one, and a restored
// trainer's optimizer state goes with it.
void set_layout(sw_trainer& t, std::shared_ptr<Communicator> world, const ParallelLayout& layout) {
  SW_CHECK_ARG(!t.stepped && !t.world,
               "the parallel layout is set once, before this trainer's first step");
  const bool split = layout.ep > 1 || layout.mp > 1;
  SW_CHECK(!split || !t.teacher, Status::kUnsupported,
           "distill_teacher: distillation runs in one process or data parallel (the whole "
           "teacher on every rank), not with expert or model parallelism");
  const Device device = t.model->model.device();
  if (world->size() > 1 && !device.is_cpu())
    world = device_world(*world, device, device_transport(t.config));
  auto groups = std::make_unique<ParallelCommunicators>(*world, layout);  // collective
  const ParallelGroups& g = groups->groups();
  const int64_t replicas = g.data_parallel ? g.data_parallel->size() : 1;
  SW_CHECK_ARG(t.config.batch_size() % (replicas * t.config.micro_batches()) == 0, "batch_size ",
               t.config.batch_size(), " does not split into ", replicas, " replicas x ",
               t.config.micro_batches(), " micro-batches");
  std::unique_lock lock(t.model->mutex);
  std::shared_ptr<ModelState> model = t.model;
  std::unique_ptr<Trainer> trainer;
  if (split) {
    const SwitchTransformer& whole = t.model->model;
    model = std::make_shared<ModelState>(SwitchTransformer(
        whole.config(), whole.seed(), DType::f32, device, g.expert_parallel, g.model_parallel));
    model->threads = t.model->threads;
  }
  auto shares = std::make_unique<ModelShares>(model->model, g);  // collective under ep
  if (split) {
    restore_tensors(shares->parameters_from(named_parameters(t.model->model)),
                    named_parameters(model->model), true, "parameter");
    TrainOptions options = train_options(t.config);
    options.teacher = t.teacher.get();
    options.data_parallel = g.data_parallel;
    options.expert_parallel = g.expert_parallel;
    trainer = std::make_unique<Trainer>(model->model, options);
    if (t.trainer->steps_done() > 0)
      trainer->restore(t.trainer->steps_done(), shares->state_from(t.trainer->optimizer().state()));
  }
  lock.unlock();
  // Nothing above changed the trainer; from here nothing throws.
  t.world = std::move(world);
  t.replicas = g.data_parallel;
  t.groups = std::move(groups);
  t.shares = std::move(shares);
  t.split_model = split;
  if (split) {
    t.model = std::move(model);
    t.trainer = std::move(trainer);
  } else {
    t.trainer->set_data_parallel(t.replicas);
  }
}

// A trainer of the model. A fresh one (not restored) of a distillation config starts the
// model from the teacher's shared weights when the config says so.
sw_trainer* new_trainer(std::shared_ptr<ModelState> model, TrainConfig config, bool fresh) {
  validate(config);
  SW_CHECK(model->model.dtype() != DType::bf16, Status::kUnsupported,
           "training runs on f32 models (f64 on the cpu) in this version; the model is bf16 on ",
           model->model.device().str(), " (sw_model_copy_to makes an f32 copy)");
  SW_CHECK(model->model.config().aux_loss_mode() == ModelConfig::AUX_PER_LAYER,
           Status::kUnsupported, "training needs aux_loss_mode AUX_PER_LAYER (the HF modes ",
           "have no backward); the model has ",
           ModelConfig::AuxLossMode_Name(model->model.config().aux_loss_mode()));
  // A trainer trains the model it is given; init_from is where a `switch train` run starts.
  SW_CHECK(!fresh || config.init_from().empty(), Status::kUnsupported, "train config: init_from (",
           config.init_from(), ") starts a `switch train` run; a ",
           "trainer trains the model it is given: load the checkpoint into that model first ",
           "(sw_model_load_parameters, or create it with sw_model_from_pretrained)");
  // A device in the config must be the model's: the trainer never moves the model.
  const std::string where = model->model.device().str();
  SW_CHECK_ARG(!config.has_device() || Device::parse(config.device()) == model->model.device(),
               "train config: device ", config.device(), ", but the model is on ", where,
               " (the trainer trains the model where it is; sw_model_copy_to moves a model)");
  // device_transport says how a GPU model's ranks move device tensors: a cpu model has none.
  SW_CHECK_ARG(!config.has_device_transport() || !model->model.device().is_cpu(),
               "train config: device_transport ",
               TrainConfig::DeviceTransport_Name(config.device_transport()),
               " moves device tensors between ranks, and the model is on cpu");
  config.set_device(where);
  *config.mutable_model() = model->model.config();
  validate_precision(config);  // against the model's router_dtype and device
  auto t = std::make_unique<sw_trainer>();
  TrainOptions options = train_options(config);
  if (!config.distill_teacher().empty()) {  // distillation: the teacher, and the start
    t->teacher = std::make_shared<SwitchTransformer>(
        model_from_checkpoint(load_checkpoint(config.distill_teacher())));
    options.teacher = t->teacher.get();
  }
  t->trainer = std::make_unique<Trainer>(model->model, options);  // checks the teacher
  if (t->teacher && fresh && config.distill_init_from_teacher()) {
    std::unique_lock lock(model->mutex);
    init_from_teacher(*t->teacher, model->model);
  }
  t->model = std::move(model);
  t->config = std::move(config);
  return t.release();
}

}  // namespace
}  // namespace sw::capi

using namespace sw::capi;  // NOLINT: this file implements the namespace's C face

extern "C" {

sw_status sw_trainer_create(sw_model* model, const sw_config* train_config, sw_trainer** out) {
  return guard(__func__, [&] {
    sw_trainer** target = &deref(out, "out");
    model_state(model);
    *target = new_trainer(model->state, train_config_arg(train_config), true);
  });
}

namespace {

// One TensorBoard record for sw_trainer_log_to, on world rank 0 only (the layout may be set
// after log_to). The file is made at the first record, starting a session at its step.
void log_record(sw_trainer& t, int64_t step, const sw::TensorBoardSummary& summary) {
  if (t.log_dir.empty() || (t.world && t.world->rank() != 0)) return;
  if (!t.events) t.events = std::make_unique<sw::TensorBoardWriter>(t.log_dir, step);
  t.events->write(step, summary);
}

}  // namespace

sw_status sw_trainer_step(sw_trainer* trainer, const sw_batch* batch, sw_metrics* out) {
  return guard(__func__, [&] {
    sw_trainer& t = trainer_arg(trainer);
    if (out) check_struct_size(out->struct_size, v1_size<sw_metrics>(), "out");
    std::lock_guard trainer_lock(t.mutex);
    sw::Batch b;
    sw::DataPosition before;
    if (batch) {
      b = to_batch(batch, true);
    } else {
      before = pipeline(t).train_data().position();
      b = t.data->next_batch(t.model->model.config());
      if (t.replicas) b = sw::shard_batch(b, t.replicas->rank(), t.replicas->size());
    }
    std::unique_lock lock(t.model->mutex);
    ScopedThreads threads(t.model->threads);
    sw::TrainMetrics m;
    try {
      m = t.trainer->step(sw::split_micro_batches(b, t.config.micro_batches()));
    } catch (...) {
      if (!batch) t.data->train_data().set_position(before);  // the batch comes again
      throw;
    }
    t.stepped = true;
    if (out) write_struct(out, to_metrics(m), "out");
    log_record(t, m.step, sw::metrics_summary(m));
  });
}

sw_status sw_trainer_evaluate(sw_trainer* trainer, const sw_batch* batch, sw_metrics* out) {
  return guard(__func__, [&] {
    sw_trainer& t = trainer_arg(trainer);
    deref(out, "out");
    std::lock_guard trainer_lock(t.mutex);
    std::vector<sw::Batch> batches;
    if (batch) {
      batches.push_back(to_batch(batch, true));
    } else {
      pipeline(t);
      batches = t.eval_batches;
    }
    std::shared_lock lock(t.model->mutex);
    ScopedThreads threads(t.model->threads);
    const sw::EvalMetrics m = t.trainer->evaluate(batches);
    write_struct(out, to_metrics(m, t.trainer->steps_done()), "out");
    log_record(t, t.trainer->steps_done(), sw::metrics_summary(m));
  });
}

sw_status sw_trainer_log_to(sw_trainer* trainer, const char* dir) {
  return guard(__func__, [&] {
    sw_trainer& t = trainer_arg(trainer);
    std::lock_guard trainer_lock(t.mutex);
    t.events.reset();
    t.log_dir.clear();
    if (!dir || !*dir) return;
    std::error_code error;
    std::filesystem::create_directories(dir, error);
    SW_CHECK(!error, sw::Status::kIo, "sw_trainer_log_to: cannot create ", dir, ": ",
             error.message());
    t.log_dir = dir;
  });
}

sw_status sw_trainer_save(sw_trainer* trainer, const char* root) {
  return guard(__func__, [&] {
    sw_trainer& t = trainer_arg(trainer);
    const std::string dir = string_arg(root, "root");
    std::lock_guard trainer_lock(t.mutex);
    std::shared_lock lock(t.model->mutex);
    sw::Checkpoint c;
    c.step = t.trainer->steps_done();
    c.model = t.model->model.config();
    c.train = t.config;
    c.seed = t.model->model.seed();
    c.data = t.data ? t.data->train_data().position() : t.resume_position;
    sw::SaveOptions options;
    options.keep_last = t.config.keep_checkpoints();
    const bool writer = !t.shares || t.shares->writer();
    // The tokenizer first: a checkpoint that `latest` names always has its tokenizer.
    if (t.data && writer) {
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      SW_CHECK(!ec, sw::Status::kIo, "cannot create ", dir, ": ", ec.message());
      t.data->tokenizer().save(dir + "/tokenizer.model");
    }
    if (t.shares) {  // collective: the whole model from every rank's share
      t.shares->save(std::move(c), named_parameters(t.model->model), t.trainer->optimizer().state(),
                     dir, options);
      return;
    }
    for (const auto& e : t.model->model.parameters().entries())
      c.parameters.push_back({e.name, e.tensor.to(sw::Device::cpu())});
    c.optimizer_state = t.trainer->optimizer().state();
    sw::save_checkpoint(dir, c, options);
  });
}

sw_status sw_trainer_restore(const char* path, const char* device, sw_trainer** out) {
  return guard(__func__, [&] {
    sw_trainer** target = &deref(out, "out");
    const std::string where = string_arg(path, "path");
    string_arg(device, "device");
    const sw::Checkpoint c = sw::load_checkpoint(where);
    SW_CHECK_ARG(c.train.ByteSizeLong() > 0, "path: ", where,
                 " holds a model saved without a trainer (load it with sw_model_load)");
    auto state = make_model_state(sw::model_from_checkpoint(c), device);
    sw::TrainConfig train = c.train;
    train.clear_device();  // the run continues on the device asked for, whichever it left
    std::unique_ptr<sw_trainer> t(new_trainer(std::move(state), train, false));
    // The run's tokenizer lives beside the checkpoints (sw_trainer_save) or beside their
    // folder (`switch train --out DIR`: DIR/tokenizer.model, DIR/checkpoints/...).
    const std::filesystem::path root = std::filesystem::canonical(checkpoint_root_of(where));
    for (const auto& candidate : {root / "tokenizer.model", root.parent_path() / "tokenizer.model"})
      if (std::filesystem::exists(candidate)) {
        t->tokenizer_path = std::filesystem::canonical(candidate).string();
        break;
      }
    t->trainer->restore(c.step, c.optimizer_state);
    t->resume_position = c.data;
    *target = t.release();
  });
}

sw_status sw_trainer_model(sw_trainer* trainer, sw_model** out) {
  return guard(__func__, [&] {
    sw_trainer& t = trainer_arg(trainer);
    SW_CHECK(!t.split_model, sw::Status::kUnsupported,
             "this rank holds only its share of the trainer's model (sw_trainer_set_parallel "
             "with ep or mp): save a checkpoint with sw_trainer_save and load it with "
             "sw_model_load");
    put_out(out, [&] { return new_model_handle(t.model); });
  });
}

void sw_trainer_destroy(sw_trainer* trainer) { delete trainer; }

sw_status sw_communicator_from_env(sw_communicator** out) {
  return guard(__func__, [&] {
    sw_communicator** target = &deref(out, "out");
    std::shared_ptr<sw::Communicator> comm =
        sw::launched_by_mpi() ? sw::mpi_world() : sw::local_communicator();
    *target = new sw_communicator{std::move(comm)};
  });
}

sw_status sw_communicator_rank(const sw_communicator* comm, int* out) {
  return guard(__func__, [&] { deref(out, "out") = deref(comm, "comm").comm->rank(); });
}

sw_status sw_communicator_size(const sw_communicator* comm, int* out) {
  return guard(__func__, [&] { deref(out, "out") = deref(comm, "comm").comm->size(); });
}

void sw_communicator_abort(sw_communicator* comm, int code) {
  if (comm && comm->comm) comm->comm->abort(code);
  std::_Exit(code);
}

void sw_communicator_destroy(sw_communicator* comm) { delete comm; }

sw_status sw_trainer_set_data_parallel(sw_trainer* trainer, sw_communicator* comm) {
  return guard(__func__, [&] {
    sw_trainer& t = trainer_arg(trainer);
    const sw_communicator& c = deref(comm, "comm");
    std::lock_guard trainer_lock(t.mutex);
    sw::ParallelLayout layout;
    layout.dp = c.comm->size();
    set_layout(t, c.comm, layout);
  });
}

sw_status sw_trainer_set_parallel(sw_trainer* trainer, sw_communicator* comm, const char* layout) {
  return guard(__func__, [&] {
    sw_trainer& t = trainer_arg(trainer);
    const sw_communicator& c = deref(comm, "comm");
    const std::string spec = string_arg(layout, "layout");
    std::lock_guard trainer_lock(t.mutex);
    set_layout(t, c.comm, sw::parse_parallel_layout(spec, c.comm->size()));
  });
}

sw_status sw_communicator_split(const sw_communicator* comm, int color, int key,
                                sw_communicator** out) {
  return guard(__func__, [&] {
    sw_communicator** target = &deref(out, "out");
    std::shared_ptr<sw::Communicator> part = deref(comm, "comm").comm->split(color, key);
    *target = new sw_communicator{std::move(part)};
  });
}

sw_status sw_communicator_from_mpi(const void* mpi_comm, sw_communicator** out) {
  return guard(__func__, [&] {
    sw_communicator** target = &deref(out, "out");
    SW_CHECK_ARG(mpi_comm != nullptr, "mpi_comm is NULL");
    std::shared_ptr<sw::Communicator> comm = sw::mpi_communicator(mpi_comm);
    *target = new sw_communicator{std::move(comm)};
  });
}

}  // extern "C"
