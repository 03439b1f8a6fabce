// `switch`: the command-line front end. Subcommands:
//   switch presets                         list the compiled-in presets
//   switch config  [--preset P | --config F]   print a config with every field
//   switch inspect [--preset P | --config F]   parameters and sparse blocks
//   switch forward [--preset P | --config F] [--text FILE] [--batch B]
//                  [--input-len N] [--target-len M] [--seed S] [--threads T] [--train]
//                  [--routing-csv FILE]
//       run one forward pass on a batch of real text and print losses and per-layer routing
//       (and write it as CSV for scripts/plot_routing.py)
//   switch train [--preset P | --config F] [--text FILE] [--steps N] [--lr X]
//                [--optimizer adafactor|adamw] [--micro-batches K] [--log-every K]
//                [--loss-csv FILE] [--routing-csv FILE] [batch options as for forward]
//       train on windows of the text (byte tokens, continuation targets), the last tenth
//       held out for evaluation; prints a line every --log-every steps
//   switch validate [--preset P | --config F] [--device cuda:0] [--dtype f32|bf16]
//                   [--tolerance X] [--min-agreement F] [batch options as for forward]
//       the same batch through the cpu f32 reference and the device: per-block max and mean
//       relative differences, routing agreement; exit status 3 when outside tolerance
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/data/byte_tokenizer.h"
#include "core/model/switch_transformer.h"
#include "core/model/validate.h"
#include "core/train/trainer.h"

namespace {

using Args = std::map<std::string, std::string>;

const char* kUsage =
    "usage: switch <presets | config | inspect | forward | train | validate> [options]\n"
    "  --preset NAME      a compiled-in preset (default tiny)\n"
    "  --config FILE      a ModelConfig in protobuf text format (overrides --preset)\n"
    "  --text FILE        text for the forward batch (default /usr/share/common-licenses/GPL-3)\n"
    "  --batch B          sequences per batch (default 8)\n"
    "  --input-len N      encoder tokens per sequence (default 128)\n"
    "  --target-len M     decoder tokens per sequence (default 32)\n"
    "  --seed S           parameter seed (default 0)\n"
    "  --threads T        CPU threads (default: all)\n"
    "  --train            training-mode forward (dropout, jitter, train capacity)\n"
    "  --routing-csv FILE write per-layer, per-expert routing counts as CSV\n"
    "  --steps N          train: optimizer steps (default 200)\n"
    "  --lr X             train: constant learning rate (default 0.01; Adafactor as T5)\n"
    "  --optimizer O      train: adafactor (default) or adamw\n"
    "  --micro-batches K  train: split each batch into K accumulated micro-batches\n"
    "  --log-every K      train: a progress line every K steps (default 20)\n"
    "  --loss-csv FILE    train: the loss curve as CSV for scripts/plot_training.py\n"
    "  --device D         validate: the device checked against the cpu (default cuda:0)\n"
    "  --dtype T          validate: f32 (default, TF32 off) or bf16\n"
    "  --tolerance X      validate: largest max relative difference (default 1e-4, bf16 5e-2)\n"
    "  --min-agreement F  validate: routing agreement per layer (default 1, bf16 0.95)\n";

Args parse_args(int argc, char** argv) {
  Args args;
  for (int i = 2; i < argc; ++i) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0)
      throw sw::Error(sw::Status::kInvalidArgument, "unexpected argument " + key);
    key = key.substr(2);
    if (key == "train") {
      args[key] = "1";
    } else {
      if (i + 1 >= argc)
        throw sw::Error(sw::Status::kInvalidArgument, "--" + key + " needs a value");
      args[key] = argv[++i];
    }
  }
  return args;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw sw::Error(sw::Status::kNotFound, "cannot read " + path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

std::string arg(const Args& a, const std::string& key, const std::string& fallback) {
  const auto it = a.find(key);
  return it == a.end() ? fallback : it->second;
}

int64_t int_arg(const Args& a, const std::string& key, int64_t fallback) {
  const std::string v = arg(a, key, "");
  if (v.empty()) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (*end != '\0')
    throw sw::Error(sw::Status::kInvalidArgument, "--" + key + ": not an integer: " + v);
  return x;
}

sw::ModelConfig load_config(const Args& a) {
  if (a.count("config")) return sw::config_from_text(read_file(a.at("config")));
  return sw::preset(arg(a, "preset", "tiny"));
}

void print_inspect(const sw::ModelConfig& config) {
  std::printf("model %s: %.1fM parameters, %lld experts\n", config.name().c_str(),
              sw::count_parameters(config) / 1e6, static_cast<long long>(config.num_experts()));
  for (sw::Stack s : {sw::Stack::kEncoder, sw::Stack::kDecoder}) {
    std::printf("  %s: %lld blocks, sparse:", sw::stack_name(s),
                static_cast<long long>(sw::num_layers(config, s)));
    for (int64_t i = 0; i < sw::num_layers(config, s); ++i)
      if (sw::is_sparse_block(config, s, i)) std::printf(" %lld", static_cast<long long>(i));
    std::printf("\n");
  }
}

sw::Batch text_batch(const sw::ModelConfig& config, const Args& a) {
  return sw::make_continuation_batch(read_file(arg(a, "text", "/usr/share/common-licenses/GPL-3")),
                                     int_arg(a, "batch", 8), int_arg(a, "input-len", 128),
                                     int_arg(a, "target-len", 32), config);
}

double double_arg(const Args& a, const std::string& key, double fallback) {
  const std::string v = arg(a, key, "");
  if (v.empty()) return fallback;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (*end != '\0')
    throw sw::Error(sw::Status::kInvalidArgument, "--" + key + ": not a number: " + v);
  return x;
}

void write_routing_csv(const std::string& path, const std::vector<sw::LayerRouting>& routing) {
  std::ofstream out(path);
  if (!out) throw sw::Error(sw::Status::kIo, "cannot write " + path);
  out << "stack,block,expert,tokens,kept,capacity_total,dropped_fraction,router_entropy\n";
  for (const sw::LayerRouting& r : routing) {
    int64_t tokens = 0;
    for (int64_t n : r.stats.tokens_per_expert) tokens += n;
    const int64_t capacity_total = r.capacity * (tokens / r.group_size);
    for (size_t e = 0; e < r.stats.tokens_per_expert.size(); ++e)
      out << sw::stack_name(r.stack) << ',' << r.block << ',' << e << ','
          << r.stats.tokens_per_expert[e] << ',' << r.stats.kept_per_expert[e] << ','
          << capacity_total << ',' << r.stats.dropped_fraction << ',' << r.stats.router_entropy
          << '\n';
  }
}

// The per-layer routing table (and, with --routing-csv, the CSV for the plot).
void report_routing(const std::vector<sw::LayerRouting>& routing, const Args& a) {
  std::printf("%-8s %5s %5s %7s %8s %8s  %s\n", "stack", "block", "cap", "dropped", "entropy",
              "aux", "tokens per expert (kept)");
  for (const sw::LayerRouting& r : routing) {
    std::printf("%-8s %5lld %5lld %6.1f%% %8.4f %8.5f ", sw::stack_name(r.stack),
                static_cast<long long>(r.block), static_cast<long long>(r.capacity),
                100.0 * r.stats.dropped_fraction, r.stats.router_entropy, r.aux_loss);
    for (size_t e = 0; e < r.stats.tokens_per_expert.size(); ++e)
      std::printf(" %lld(%lld)", static_cast<long long>(r.stats.tokens_per_expert[e]),
                  static_cast<long long>(r.stats.kept_per_expert[e]));
    std::printf("\n");
  }
  if (a.count("routing-csv")) {
    write_routing_csv(a.at("routing-csv"), routing);
    std::printf("\nrouting written to %s\n", a.at("routing-csv").c_str());
  }
}

// Evaluation loss (eval mode) on evenly spaced windows of the held-out text.
double evaluate(const sw::SwitchTransformer& model, const std::string& held_out, const Args& a) {
  const sw::Batch b =
      sw::make_continuation_batch(held_out, int_arg(a, "batch", 8), int_arg(a, "input-len", 128),
                                  int_arg(a, "target-len", 32), model.config());
  return model.forward(b).loss;
}

void run_train(const sw::ModelConfig& config, const Args& a) {
  const std::string text = read_file(arg(a, "text", "/usr/share/common-licenses/GPL-3"));
  const size_t split = text.size() * 9 / 10;
  const std::string train_text = text.substr(0, split), held_out = text.substr(split);
  const int64_t steps = int_arg(a, "steps", 200),
                log_every = std::max<int64_t>(1, int_arg(a, "log-every", 20));
  const int64_t batch = int_arg(a, "batch", 8), input_len = int_arg(a, "input-len", 128),
                target_len = int_arg(a, "target-len", 32), micro = int_arg(a, "micro-batches", 1);
  if (micro < 1 || batch % micro != 0)
    throw sw::Error(sw::Status::kInvalidArgument, "--micro-batches: must divide --batch");
  sw::SwitchTransformer model(config, static_cast<uint64_t>(int_arg(a, "seed", 0)));
  sw::TrainOptions options;
  options.schedule.kind = sw::LearningRateSchedule::Kind::kConstant;
  options.schedule.base = double_arg(a, "lr", 0.01);
  const std::string optimizer = arg(a, "optimizer", "adafactor");
  if (optimizer == "adamw")
    options.optimizer = sw::TrainOptions::OptimizerKind::kAdamW;
  else if (optimizer != "adafactor")
    throw sw::Error(sw::Status::kInvalidArgument,
                    "--optimizer: adafactor or adamw, got " + optimizer);
  sw::Trainer trainer(model, options);
  std::printf(
      "training %s (%.1fM parameters, %s, lr %g) on %zu bytes of text, batch %lld x (%lld + "
      "%lld)\n",
      config.name().c_str(), model.parameters().num_elements() / 1e6, optimizer.c_str(),
      options.schedule.base, train_text.size(), static_cast<long long>(batch),
      static_cast<long long>(input_len), static_cast<long long>(target_len));
  std::printf("held-out loss before training: %.4f\n", evaluate(model, held_out, a));
  std::ofstream csv;
  if (a.count("loss-csv")) {
    csv.open(a.at("loss-csv"));
    csv << "step,loss,ce,aux,z,grad_norm,dropped_fraction\n";
  }
  // Each step reads windows from a different stretch of the text (Philox-chosen).
  const size_t span = static_cast<size_t>(batch * (input_len + target_len) * 4);
  const sw::RandomStream order(static_cast<uint64_t>(int_arg(a, "seed", 0)),
                               sw::RandomPurpose::kData, 0, 0);
  double seconds = 0, tokens = 0;
  for (int64_t s = 1; s <= steps; ++s) {
    const size_t start = train_text.size() > span ? order.bits(s) % (train_text.size() - span) : 0;
    const sw::Batch b = sw::make_continuation_batch(train_text.substr(start, span), batch,
                                                    input_len, target_len, config);
    std::vector<sw::Batch> parts;
    for (int64_t k = 0; k < micro; ++k) {
      const int64_t lo = k * batch / micro, hi = (k + 1) * batch / micro;
      sw::Batch p;
      p.input_ids = b.input_ids.slice(lo, hi);
      p.attention_mask = b.attention_mask.slice(lo, hi);
      p.decoder_input_ids = b.decoder_input_ids.slice(lo, hi);
      p.decoder_attention_mask = b.decoder_attention_mask.slice(lo, hi);
      p.labels = b.labels.slice(lo, hi);
      parts.push_back(p);
    }
    const sw::TrainMetrics m = trainer.step(parts);
    seconds += m.seconds;
    tokens += static_cast<double>(m.tokens);
    if (csv)
      csv << m.step << ',' << m.loss << ',' << m.ce << ',' << m.aux << ',' << m.z << ','
          << m.grad_norm << ',' << m.dropped_fraction << '\n';
    if (s % log_every == 0 || s == steps)
      std::printf(
          "step %5lld/%lld  loss %.4f (ce %.4f aux %.4f z %.4f)  |g| %.3f  dropped %4.1f%%  %.0f "
          "tokens/s\n",
          static_cast<long long>(m.step), static_cast<long long>(steps), m.loss, m.ce, m.aux, m.z,
          m.grad_norm, 100 * m.dropped_fraction, tokens / seconds);
  }
  std::printf("held-out loss after %lld steps: %.4f\n", static_cast<long long>(steps),
              evaluate(model, held_out, a));
  std::printf("\nrouting of the trained model (eval) on a batch of the text:\n");
  report_routing(model.forward(text_batch(config, a)).routing, a);
}

// Returns the exit status: 0 within tolerance, 3 outside.
int run_validate(const sw::ModelConfig& config, const Args& a) {
  sw::ValidationOptions options;
  options.device = sw::Device::parse(arg(a, "device", "cuda:0"));
  const std::string dtype = arg(a, "dtype", "f32");
  if (dtype != "f32" && dtype != "bf16")
    throw sw::Error(sw::Status::kInvalidArgument, "--dtype: f32 or bf16, got " + dtype);
  const bool bf16 = dtype == "bf16";
  options.dtype = bf16 ? sw::DType::bf16 : sw::DType::f32;
  options.tolerance = double_arg(a, "tolerance", bf16 ? 5e-2 : 1e-4);
  options.min_routing_agreement = double_arg(a, "min-agreement", bf16 ? 0.95 : 1.0);
  const sw::Batch b = text_batch(config, a);
  std::printf("validating %s on %s in %s against the cpu in f32...\n", config.name().c_str(),
              options.device.str().c_str(), dtype.c_str());
  const sw::ValidationReport report =
      sw::validate_devices(config, static_cast<uint64_t>(int_arg(a, "seed", 0)), b, options);
  std::fputs(report.text(options).c_str(), stdout);
  return report.within_tolerance ? 0 : 3;
}

void print_forward(const sw::ModelConfig& config, const Args& a) {
  const int64_t batch = int_arg(a, "batch", 8), input_len = int_arg(a, "input-len", 128),
                target_len = int_arg(a, "target-len", 32);
  const std::string text_path = arg(a, "text", "/usr/share/common-licenses/GPL-3");
  const sw::Batch b = text_batch(config, a);
  std::printf("building %s (seed %lld, %d threads)...\n", config.name().c_str(),
              static_cast<long long>(int_arg(a, "seed", 0)), omp_get_max_threads());
  const sw::SwitchTransformer model(config, static_cast<uint64_t>(int_arg(a, "seed", 0)));
  std::printf("%.1fM parameters; batch %lld x (%lld encoder + %lld decoder) tokens of %s\n",
              model.parameters().num_elements() / 1e6, static_cast<long long>(batch),
              static_cast<long long>(input_len), static_cast<long long>(target_len),
              text_path.c_str());
  sw::ForwardOptions options;
  options.train = a.count("train") != 0;
  const auto start = std::chrono::steady_clock::now();
  const sw::ForwardOutput out = model.forward(b, options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("forward (%s): %.3f s, %.0f tokens/s\n", options.train ? "train" : "eval", seconds,
              static_cast<double>(batch * (input_len + target_len)) / seconds);
  std::printf("loss %.4f = ce %.4f (%lld tokens) + aux %.5f + z %.5f\n\n", out.loss, out.ce_loss,
              static_cast<long long>(out.label_tokens), out.aux_loss, out.z_loss);
  report_routing(out.routing, a);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  try {
    const Args a = parse_args(argc, argv);
    if (a.count("threads")) {
      const int64_t threads = int_arg(a, "threads", 1);
      if (threads < 1 || threads > 4096)
        throw sw::Error(sw::Status::kInvalidArgument, "--threads: must be in [1, 4096]");
      omp_set_num_threads(static_cast<int>(threads));
    }
    if (command == "presets") {
      for (const auto& name : sw::preset_names()) std::printf("%s\n", name.c_str());
    } else if (command == "config") {
      std::fputs(sw::config_to_text(load_config(a)).c_str(), stdout);
    } else if (command == "inspect") {
      print_inspect(load_config(a));
    } else if (command == "forward") {
      print_forward(load_config(a), a);
    } else if (command == "train") {
      run_train(load_config(a), a);
    } else if (command == "validate") {
      return run_validate(load_config(a), a);
    } else {
      std::fprintf(stderr, "switch: unknown command \"%s\"\n%s", command.c_str(), kUsage);
      return 2;
    }
  } catch (const sw::Error& e) {
    std::fprintf(stderr, "switch %s: %s: %s\n", command.c_str(), sw::status_name(e.status()),
                 e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "switch %s: %s\n", command.c_str(), e.what());
    return 1;
  }
  return 0;
}
