// switch train [--config FILE] [--preset P] [--set key=value]... [--out DIR] [--examples N]
//              [--resume] [--parallel dp=N[,ep=M][,mp=K]] [--device cpu|cuda|cuda:N]
//              [--comm nccl|staged]
//     span-corruption pre-training from a TrainConfig (core/proto/libswitch.proto; default
//     the tiny preset on the fortunes corpus): a progress bar (or a line every
//     log_interval steps), held-out evaluation, <out>/metrics.jsonl, summary.json, the
//     tokenizer and the resolved config, checkpoints under <out>/checkpoints (every
//     checkpoint_interval steps and at the end); --resume continues the latest one bit for
//     bit; --examples N shows greedy span infilling. Under mpirun (or srun), --parallel
//     dp=N,ep=M trains over N x M ranks: each steps on its shard of the global batch,
//     each group of M ranks splits every sparse layer's experts; dp=N,mp=M: each group
//     of M ranks splits the attention heads and d_ff and shares one batch shard;
//     dp=N,ep=M,mp=K both: M groups of K ranks split the experts, and each group its
//     experts' d_ff and the heads; rank 0 prints and writes checkpoints of the whole
//     model, which continue at any layout;
//     --device cuda:0 trains on one GPU, in f32 or, with precision BF16, in bf16 with f32
//     masters (a checkpoint resumes on either device);
//     under a launcher, --device cuda gives each rank its local rank's GPU, and dp, ep and
//     mp run there with device tensors moved by NCCL or, with --comm staged, through host
//     memory over MPI (several ranks may then share a GPU)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/dist/communicator.h"
#include "core/dist/device_communicator.h"
#include "core/dist/layout.h"
#include "core/dist/traffic.h"
#include "core/infer/generate.h"
#include "core/io/checkpoint.h"
#include "core/tensor/allocator.h"
#include "core/train/pretraining_run.h"

namespace sw::cli {
namespace {

// A progress bar when stdout is a terminal, a line every log_interval steps otherwise.
void report_step(const sw::TrainMetrics& m, int64_t steps, int64_t log_interval,
                 double tokens_per_second, bool terminal) {
  char line[256];
  std::snprintf(line, sizeof line,
                "step %5lld/%lld  loss %.4f (ce %.4f aux %.4f z %.4f)  |g| %.3f  lr %.3g  "
                "dropped %4.1f%%  %.0f tok/s",
                static_cast<long long>(m.step), static_cast<long long>(steps), m.loss, m.ce, m.aux,
                m.z, m.grad_norm, m.learning_rate, 100 * m.dropped_fraction, tokens_per_second);
  if (terminal) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * m.step / steps);
    std::printf("\r[%s%s] %s", std::string(filled, '#').c_str(),
                std::string(kWidth - filled, '.').c_str(), line);
    if (m.step == steps) std::printf("\n");
    std::fflush(stdout);
  } else if (m.step % log_interval == 0 || m.step == steps) {
    std::printf("%s\n", line);
    std::fflush(stdout);
  }
}

void report_eval(const sw::EvalMetrics& e, int64_t step, bool terminal) {
  std::printf("%seval @ step %lld: loss %.4f (ce %.4f aux %.4f z %.4f), dropped %.1f%%\n",
              terminal ? "\n" : "", static_cast<long long>(step), e.loss, e.ce, e.aux, e.z,
              100 * e.dropped_fraction);
}

// Greedy span infilling on held-out examples: input, the model's answer and the truth.
std::string infill_examples(const sw::PretrainingRun& run, int64_t count) {
  const sw::Batch& b = run.eval_batches().front();
  count = std::min<int64_t>(count, b.input_ids.dim(0));
  const sw::Tensor ids = b.input_ids.slice(0, count), mask = b.attention_mask.slice(0, count);
  sw::GenerateOptions options;
  options.max_new_tokens = b.labels.dim(1);
  options.vocab_limit = run.tokenizer().vocab_size();
  // Generation runs on the cpu: a GPU-trained model lends its weights to a cpu copy.
  std::unique_ptr<sw::SwitchTransformer> cpu_copy;
  if (!run.model().device().is_cpu())
    cpu_copy = std::make_unique<sw::SwitchTransformer>(
        run.model().copy_to(sw::Device::cpu(), sw::DType::f32));
  const auto answers = sw::generate(cpu_copy ? *cpu_copy : run.model(), ids, mask, options);
  std::string text;
  for (int64_t s = 0; s < count; ++s) {
    auto row = [&](const sw::Tensor& t) {
      std::vector<int32_t> v;
      for (int64_t i = 0; i < t.dim(1); ++i)
        if (t.data<int32_t>()[s * t.dim(1) + i] >= 0)
          v.push_back(t.data<int32_t>()[s * t.dim(1) + i]);
      return v;
    };
    text += "input:  " + run.tokenizer().decode(row(ids)) + "\n";
    text += "model:  " + run.tokenizer().decode(answers[s]) + "\n";
    text += "truth:  " + run.tokenizer().decode(row(b.labels)) + "\n\n";
  }
  return text;
}

// What a rank used over the training steps: host tensor bytes (its parameters, the most
// alive at once during a step, and what was alive before the first step: parameters,
// data, evaluation batches) and the bytes it sent per step by collective (traffic.h).
struct RankUsage {
  double parameter_bytes = 0, resident_before_steps = 0, peak_in_steps = 0;
  sw::TrafficCounts sent_per_step;

  std::string json(int rank) const {
    char text[512];
    std::snprintf(text, sizeof text,
                  "{\"rank\": %d, \"parameter_bytes\": %.0f, \"resident_before_steps\": %.0f, "
                  "\"peak_in_steps\": %.0f, \"sent_per_step\": {\"all_reduce\": %.0f, "
                  "\"all_gather\": %.0f, \"all_to_all\": %.0f, \"broadcast\": %.0f}}",
                  rank, parameter_bytes, resident_before_steps, peak_in_steps,
                  sent_per_step.all_reduce, sent_per_step.all_gather, sent_per_step.all_to_all,
                  sent_per_step.broadcast);
    return text;
  }
};

// switch train's config: the file's (or the defaults), the preset, the overrides.
sw::TrainConfig train_config(const Flags& flags) {
  sw::TrainConfig config = flags.has("config")
                               ? sw::train_config_from_text(read_file(flags.value("config")))
                               : sw::TrainConfig();
  if (flags.has("preset")) config.set_model_preset(flags.value("preset"));
  for (const std::string& o : flags.values("set")) sw::apply_override(config, o);
  if (flags.has("device")) sw::apply_override(config, "device=" + flags.value("device"));
  return config;
}

// switch distill's: the teacher run's own config, its model made dense (the same widths,
// no sparse block), distilled from the teacher with its tokenizer; then the overrides.
sw::TrainConfig distill_config(const Flags& flags) {
  if (!flags.has("teacher"))
    throw sw::Error(sw::Status::kInvalidArgument, "distill: --teacher is required");
  // A fixed step directory, so that a resumed run reads the same teacher.
  namespace fs = std::filesystem;
  const fs::path given = fs::absolute(flags.value("teacher"));
  const std::string teacher =
      fs::exists(given / "latest") ? sw::latest_checkpoint(given.string()) : given.string();
  const sw::Checkpoint saved = sw::load_checkpoint(teacher);
  SW_CHECK_ARG(saved.model.encoder_sparse_step() > 0 || saved.model.decoder_sparse_step() > 0,
               "distill: the teacher ", saved.model.name(),
               " has no sparse block (distil a "
               "Switch model into its dense twin)");
  sw::TrainConfig config = saved.train;
  config.clear_device();
  *config.mutable_model() = saved.model;
  config.mutable_model()->set_encoder_sparse_step(0);
  config.mutable_model()->set_decoder_sparse_step(0);
  config.mutable_model()->set_name(saved.model.name() + "-distilled");
  config.set_distill_teacher(teacher);
  const std::string tokenizer = run_tokenizer(teacher);
  SW_CHECK_ARG(!tokenizer.empty(), "distill: no tokenizer.model beside or above ", teacher,
               " (the student must read the teacher's vocabulary)");
  config.set_tokenizer_model(tokenizer);
  if (flags.has("teacher-weight"))
    config.set_distill_teacher_weight(flags.double_value("teacher-weight", 0.25));
  for (const std::string& o : flags.values("set")) sw::apply_override(config, o);
  sw::validate(config);
  return config;
}

// The run on this rank of `world` (the only rank without a launcher).
int run_train_on(sw::CountingCommunicator& world, const Flags& flags, sw::TrainConfig config) {
  const sw::ParallelLayout layout = sw::parse_parallel_layout(
      flags.value("parallel", "dp=" + std::to_string(world.size())), world.size());
  const std::string out = flags.value("out", "runs/train");
  // Generation copies the model to the cpu, which a rank holding a share of the experts
  // cannot do alone (switch generate reads the checkpoint instead).
  SW_CHECK_ARG(flags.int_value("examples", 0) == 0 || layout.ep == 1 ||
                   sw::Device::parse(config.device()).is_cpu(),
               "--examples with expert parallelism on GPUs: each rank holds a share of the "
               "experts; run switch generate on the final checkpoint instead");
  const bool terminal = isatty(fileno(stdout));
  std::printf("preparing: corpus %s, tokenizer, data (output in %s)...\n", config.corpus().c_str(),
              out.c_str());
  std::fflush(stdout);
  const auto start = std::chrono::steady_clock::now();
  const bool resume = flags.has("resume");
  const sw::ParallelCommunicators communicators(world, layout);
  if (world.size() > 1)
    std::printf("%d ranks: data parallel %lld x expert parallel %lld x model parallel %lld\n",
                world.size(), static_cast<long long>(layout.dp), static_cast<long long>(layout.ep),
                static_cast<long long>(layout.mp));
  sw::PretrainingRun run(config, out, resume, communicators.groups());
  if (run.steps_done() > 0)
    std::printf("resumed from %s at step %lld\n",
                sw::latest_checkpoint(run.checkpoint_root()).c_str(),
                static_cast<long long>(run.steps_done()));
  const sw::TrainConfig& c = run.config();
  std::printf(
      "%lld train / %lld held-out documents, %lld train tokens (SentencePiece %lld pieces + "
      "%lld sentinels), %lld examples per epoch (%lld raw tokens -> %lld inputs, %lld targets)\n",
      static_cast<long long>(run.data().train_documents()),
      static_cast<long long>(run.data().validation_documents()),
      static_cast<long long>(run.data().train_tokens()),
      static_cast<long long>(run.tokenizer().piece_count()),
      static_cast<long long>(run.tokenizer().num_sentinels()),
      static_cast<long long>(run.data().train_data().examples_per_epoch()),
      static_cast<long long>(run.data().train_data().lengths().raw),
      static_cast<long long>(run.data().train_data().lengths().inputs),
      static_cast<long long>(run.data().train_data().lengths().targets));
  std::printf(
      "training %s on %s: %.2fM parameters, %lld experts, batch %lld x (%lld + %lld), %lld "
      "steps\n",
      c.model().name().c_str(), c.device().c_str(), run.model().parameters().num_elements() / 1e6,
      static_cast<long long>(c.model().num_experts()), static_cast<long long>(c.batch_size()),
      static_cast<long long>(c.input_length()), static_cast<long long>(c.target_length()),
      static_cast<long long>(c.steps()));
  if (run.steps_done() == 0) report_eval(run.evaluate(), 0, false);
  double seconds = 0, tokens = 0;
  sw::EvalMetrics last_eval;
  sw::TrainMetrics m;
  RankUsage usage;
  usage.parameter_bytes = 4.0 * static_cast<double>(run.model().parameters().num_elements());
  usage.resident_before_steps = static_cast<double>(sw::cpu_live_bytes());
  sw::TrafficCounts step_traffic;
  int64_t steps_taken = 0;
  while (run.steps_done() < c.steps()) {
    sw::reset_cpu_peak_bytes();
    const sw::TrafficCounts before = world.counts();
    m = run.step();
    usage.peak_in_steps = std::max(usage.peak_in_steps, static_cast<double>(sw::cpu_peak_bytes()));
    const sw::TrafficCounts sent = world.counts() - before;
    step_traffic = {
        step_traffic.all_reduce + sent.all_reduce, step_traffic.all_gather + sent.all_gather,
        step_traffic.all_to_all + sent.all_to_all, step_traffic.broadcast + sent.broadcast};
    ++steps_taken;
    if (m.skipped) {  // nothing was updated; too many in a row end the run with an error
      std::printf(
          "%swarning: a step after step %lld was skipped: its loss or gradient was not "
          "finite (%lld skipped so far)\n",
          terminal ? "\n" : "", static_cast<long long>(m.step),
          static_cast<long long>(m.skipped_steps));
      continue;
    }
    const int64_t s = m.step;
    seconds += m.seconds;
    tokens += static_cast<double>(m.tokens);
    report_step(m, c.steps(), c.log_interval(), tokens / seconds, terminal);
    for (const sw::LayerLoad& l : m.layers)
      if (l.max_share() > c.collapse_warning_share() &&
          (s % c.log_interval() == 0 || s == c.steps()))
        std::printf(
            "%swarning: router collapse? %s block %lld sends %.0f%% of its tokens to expert %lld\n",
            terminal ? "\n" : "", sw::stack_name(l.stack), static_cast<long long>(l.block),
            100 * l.max_share(), static_cast<long long>(l.busiest_expert()));
    if ((c.eval_interval() > 0 && s % c.eval_interval() == 0) || s == c.steps()) {
      last_eval = run.evaluate();
      report_eval(last_eval, s, terminal && s != c.steps());
    }
    if ((c.checkpoint_interval() > 0 && s % c.checkpoint_interval() == 0) || s == c.steps()) {
      const std::string dir = run.save_checkpoint();
      if (s != c.steps() && !terminal) std::printf("checkpoint %s\n", dir.c_str());
    }
  }
  if (run.steps_done() >= c.steps() && m.step == 0)
    throw sw::Error(sw::Status::kInvalidArgument,
                    "train: the run under " + out + " has already taken " +
                        std::to_string(run.steps_done()) + " of its " + std::to_string(c.steps()) +
                        " steps (raise steps to continue)");
  if (steps_taken > 0) {
    const double n = static_cast<double>(steps_taken);
    usage.sent_per_step = {step_traffic.all_reduce / n, step_traffic.all_gather / n,
                           step_traffic.all_to_all / n, step_traffic.broadcast / n};
  }
  const std::vector<std::string> usages = sw::all_gather_bytes(world, usage.json(world.rank()));
  // Every rank generates (expert-parallel layers need them all); rank 0 reports.
  const int64_t examples = flags.int_value("examples", 0);
  const std::string infill = examples > 0 ? infill_examples(run, examples) : "";
  if (world.rank() != 0) return 0;  // rank 0 reports and writes the summary
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "final eval loss %.4f (ce %.4f), train tokens/s %.0f, dropped %.1f%% (train) %.1f%% (eval), "
      "%.0f s in all\n",
      last_eval.loss, last_eval.ce, tokens / seconds, 100 * m.dropped_fraction,
      100 * last_eval.dropped_fraction, wall);
  std::string ranks;  // each rank's usage, rank order
  for (const std::string& u : usages) ranks += (ranks.empty() ? "" : ", ") + u;
  std::ofstream(out + "/summary.json")
      << "{\"model\": \"" << c.model().name() << "\", \"experts\": " << c.model().num_experts()
      << ", \"sparse\": "
      << (c.model().encoder_sparse_step() || c.model().decoder_sparse_step() ? "true" : "false")
      << ", \"parameters\": " << run.model().parameters().num_elements()
      << ", \"steps\": " << c.steps() << ", \"final_eval_loss\": " << last_eval.loss
      << ", \"final_eval_ce\": " << last_eval.ce << ", \"tokens_per_s\": " << tokens / seconds
      << ", \"train_dropped\": " << m.dropped_fraction
      << ", \"eval_dropped\": " << last_eval.dropped_fraction << ", \"seconds\": " << wall
      << ", \"ranks\": [" << ranks << "]}\n";
  std::printf(
      "rank 0: host tensors peak %.1f MiB in a step (%.1f MiB before the first), sent "
      "%.2f MiB per step\n",
      usage.peak_in_steps / (1 << 20), usage.resident_before_steps / (1 << 20),
      usage.sent_per_step.total() / (1 << 20));
  if (examples > 0) {
    std::ofstream(out + "/infill_examples.txt") << infill;
    std::printf("\nspan infilling on held-out text (greedy):\n\n%s", infill.c_str());
  }
  std::printf("metrics in %s/metrics.jsonl, checkpoint %s\n", out.c_str(),
              sw::latest_checkpoint(run.checkpoint_root()).c_str());
  return 0;
}

// The launcher's ranks as this run needs them: on the cpu, as they are; on GPUs, moving
// device tensors by --comm's transport, with config's device resolved to this rank's GPU
// ("cuda": the local rank's; core/dist/device_communicator.h).
std::unique_ptr<sw::Communicator> rank_communicator(std::unique_ptr<sw::Communicator> host,
                                                    const Flags& flags, sw::TrainConfig& config) {
  const sw::Device device = sw::Device::parse(config.device());
  if (flags.has("comm"))
    config.set_device_transport(sw::parse_device_transport(flags.value("comm")) ==
                                        sw::DeviceTransport::kHostStaged
                                    ? sw::TrainConfig::STAGED
                                    : sw::TrainConfig::NCCL);
  // A single rank not asked for a transport has nothing to move (no NCCL world of one).
  const bool asked = flags.has("comm") || config.has_device_transport();
  if (!asked && (device.is_cpu() || host->size() == 1)) return host;
  const sw::DeviceTransport transport = sw::device_transport(config);
  const std::string named =
      flags.has("comm") ? "--comm " + flags.value("comm")
                        : std::string("device_transport ") + sw::device_transport_name(transport);
  SW_CHECK_ARG(!device.is_cpu(), named,
               ": it moves device tensors, and this run is on the cpu (add --device cuda)");
  SW_CHECK_ARG(sw::launched_by_mpi(), named,
               ": it connects the ranks of a launcher (mpirun or srun); a single process has "
               "none");
  const sw::LocalRank local = sw::local_rank(*host);
  const sw::Device mine =
      sw::rank_device(config.device(), local, sw::cuda_device_count(), transport);
  config.set_device(mine.str());
  return sw::device_communicator(std::move(host), mine, transport);
}

// Training under a launcher: every rank runs run_train_on; an error on any rank ends all
// of them (the others would wait in their next collective).
int run_training(const Flags& flags, sw::TrainConfig (*config_of)(const Flags&)) {
  std::unique_ptr<sw::Communicator> host =
      sw::launched_by_mpi() ? sw::mpi_world() : sw::local_communicator();
  const int rank = host->rank(), size = host->size();
  if (size == 1) {
    sw::TrainConfig config = config_of(flags);
    sw::CountingCommunicator world(rank_communicator(std::move(host), flags, config));
    return run_train_on(world, flags, config);
  }
  if (rank != 0 && !std::freopen("/dev/null", "w", stdout))
    throw sw::Error(sw::Status::kIo, "cannot silence rank " + std::to_string(rank));
  std::unique_ptr<sw::CountingCommunicator> world;
  try {
    sw::TrainConfig config = config_of(flags);
    world = std::make_unique<sw::CountingCommunicator>(
        rank_communicator(std::move(host), flags, config));
    return run_train_on(*world, flags, config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "switch %s: rank %d of %d: %s\n",
                 config_of == distill_config ? "distill" : "train", rank, size, e.what());
    // Through the run's communicator once it exists; before, MPI's world (the host
    // communicator may have gone with a failed device setup).
    if (world) world->abort(1);
    sw::mpi_world()->abort(1);
  }
  return 1;  // not reached: abort ends the process
}

int run_train(const Flags& flags) { return run_training(flags, train_config); }
int run_distill(const Flags& flags) { return run_training(flags, distill_config); }

}  // namespace

Command train_command() {
  return {"train",
          "span-corruption pre-training from a TrainConfig, alone or under mpirun",
          {{"config", "FILE", "a TrainConfig in protobuf text format"},
           {"preset", "NAME", "the model preset (default: the TrainConfig's)"},
           {"set", "KEY=VALUE", "override a TrainConfig field (repeatable; model.FIELD too)"},
           {"out", "DIR", "where metrics.jsonl and the rest go (default runs/train)"},
           {"examples", "N", "greedy span infilling on N held-out examples at the end"},
           {"resume", "", "continue from the latest checkpoint under --out, if any"},
           {"parallel", "LAYOUT", "the layout over the MPI ranks: dp=N, ep=M, mp=K in any mix"},
           {"device", "D",
            "train on cpu (default) or a GPU: cuda:N, or cuda (under a launcher: each rank "
            "the GPU of its local rank); f32, or bf16 with precision=BF16; sets device"},
           {"comm", "T",
            "under a launcher on GPUs: how device tensors move, nccl (default) or staged "
            "(through host memory over MPI; ranks may share a GPU); sets device_transport"},
           kThreadsFlag},
          "",
          run_train};
}

Command distill_command() {
  return {"distill",
          "a dense student trained from a Switch teacher's probabilities (paper §4.2)",
          {{"teacher", "DIR", "the teacher's checkpoint (or a root: its latest)"},
           {"teacher-weight", "W", "the teacher's share of the target (default 0.25)"},
           {"set", "KEY=VALUE", "override a field of the teacher run's TrainConfig (repeatable)"},
           {"out", "DIR", "where metrics.jsonl and the rest go (default runs/train)"},
           {"examples", "N", "greedy span infilling on N held-out examples at the end"},
           {"resume", "", "continue from the latest checkpoint under --out, if any"},
           {"parallel", "LAYOUT", "data parallel over the MPI ranks: dp=N"},
           kThreadsFlag},
          "",
          run_distill};
}

}  // namespace sw::cli
