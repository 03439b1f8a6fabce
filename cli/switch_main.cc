// `switch`: the command-line front end. Subcommands:
//   switch presets                         list the compiled-in presets
//   switch config  [--preset P | --config F]   print a config with every field
//   switch inspect [--preset P | --config F]   parameters and sparse blocks
//   switch forward [--preset P | --config F] [--text FILE] [--batch B]
//                  [--input-len N] [--target-len M] [--seed S] [--threads T] [--train]
//                  [--routing-csv FILE]
//       run one forward pass on a batch of real text and print losses and per-layer routing
//       (and write it as CSV for scripts/plot_routing.py)
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

namespace {

using Args = std::map<std::string, std::string>;

const char* kUsage =
    "usage: switch <presets | config | inspect | forward | validate> [options]\n"
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
  std::printf("%-8s %5s %5s %7s %8s %8s  %s\n", "stack", "block", "cap", "dropped", "entropy",
              "aux", "tokens per expert (kept)");
  for (const sw::LayerRouting& r : out.routing) {
    std::printf("%-8s %5lld %5lld %6.1f%% %8.4f %8.5f ", sw::stack_name(r.stack),
                static_cast<long long>(r.block), static_cast<long long>(r.capacity),
                100.0 * r.stats.dropped_fraction, r.stats.router_entropy, r.aux_loss);
    for (size_t e = 0; e < r.stats.tokens_per_expert.size(); ++e)
      std::printf(" %lld(%lld)", static_cast<long long>(r.stats.tokens_per_expert[e]),
                  static_cast<long long>(r.stats.kept_per_expert[e]));
    std::printf("\n");
  }
  if (a.count("routing-csv")) {
    write_routing_csv(a.at("routing-csv"), out.routing);
    std::printf("\nrouting written to %s\n", a.at("routing-csv").c_str());
  }
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
