// The subcommands that look at a model:
//   switch presets                         list the compiled-in presets
//   switch config  [--preset P | --config F]   print a config with every field
//   switch inspect [--preset P | --config F]   parameters and sparse blocks
//   switch inspect DIR                     a checkpoint (or the latest under a root): model,
//                                          step, tensors and bytes, per-expert weight norms
//   switch forward [--preset P | --config F] [--text FILE] [--batch B]
//                  [--input-len N] [--target-len M] [--seed S] [--threads T] [--train]
//                  [--routing-csv FILE]
//       run one forward pass on a batch of real text and print losses and per-layer routing
//       (and write it as CSV for scripts/plot_routing.py)
//   switch validate [--preset P | --config F | --ckpt DIR] [--device cuda:0] [--dtype f32|bf16]
//                   [--tolerance X] [--min-agreement F] [batch options as for forward]
//       the same batch through the cpu f32 reference and the device: per-block max and mean
//       relative differences, routing agreement; exit status 3 when outside tolerance
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/data/byte_tokenizer.h"
#include "core/io/checkpoint.h"
#include "core/model/switch_transformer.h"
#include "core/model/validate.h"

namespace sw::cli {
namespace {

std::vector<Flag> model_flags() {
  return {{"preset", "NAME", "a compiled-in preset (default tiny)"},
          {"config", "FILE", "a ModelConfig in protobuf text format (overrides --preset)"}};
}

// The batch of real text a forward pass or a validation runs on, and the fresh model's seed.
std::vector<Flag> batch_flags() {
  return {{"text", "FILE", "text for the batch (default /usr/share/common-licenses/GPL-3)"},
          {"batch", "B", "sequences per batch (default 8)"},
          {"input-len", "N", "encoder tokens per sequence (default 128)"},
          {"target-len", "M", "decoder tokens per sequence (default 32)"},
          {"seed", "S", "parameter seed (default 0)"},
          kThreadsFlag};
}

std::vector<Flag> joined(const std::vector<std::vector<Flag>>& lists) {
  std::vector<Flag> all;
  for (const auto& list : lists) all.insert(all.end(), list.begin(), list.end());
  return all;
}

sw::ModelConfig load_config(const Flags& flags) {
  if (flags.has("config")) return sw::config_from_text(read_file(flags.value("config")));
  return sw::preset(flags.value("preset", "tiny"));
}

sw::Batch text_batch(const sw::ModelConfig& config, const Flags& flags) {
  return sw::make_continuation_batch(
      read_file(flags.value("text", "/usr/share/common-licenses/GPL-3")),
      flags.int_value("batch", 8), flags.int_value("input-len", 128),
      flags.int_value("target-len", 32), config);
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

// A checkpoint: what it holds, and each expert's weight norms per sparse layer (an expert
// that never trains keeps its initial norm; one that dominates grows).
void print_checkpoint(const std::string& path) {
  const sw::Checkpoint c = sw::load_checkpoint(path);
  auto bytes = [](const std::vector<std::pair<std::string, sw::Tensor>>& tensors) {
    size_t n = 0;
    for (const auto& t : tensors) n += t.second.nbytes();
    return n;
  };
  std::printf("checkpoint %s: model %s, step %lld, seed %llu, data at epoch %lld example %lld\n",
              path.c_str(), c.model.name().c_str(), static_cast<long long>(c.step),
              static_cast<unsigned long long>(c.seed), static_cast<long long>(c.data.epoch),
              static_cast<long long>(c.data.example));
  std::printf("  %zu parameter tensors (%.2f MB), %zu optimizer state tensors (%.2f MB)\n",
              c.parameters.size(), bytes(c.parameters) / 1e6, c.optimizer_state.size(),
              bytes(c.optimizer_state) / 1e6);
  std::map<std::string, std::vector<double>> norms;  // "<layer> <projection>" -> per expert
  const std::string marker = ".experts.expert_";
  for (const auto& [name, t] : c.parameters) {
    const size_t at = name.find(marker);
    if (at == std::string::npos) continue;
    const size_t dot = name.find('.', at + marker.size());
    if (dot == std::string::npos) continue;
    char* end = nullptr;
    const long long expert = std::strtoll(name.c_str() + at + marker.size(), &end, 10);
    if (end != name.c_str() + dot || expert < 0 || expert >= c.model.num_experts()) {
      std::printf("  (skipping %s: not an expert of this model)\n", name.c_str());
      continue;
    }
    const std::string key = name.substr(0, at) + " " + name.substr(dot + 1);
    const sw::Tensor f = t.to(sw::DType::f64);
    double sq = 0;
    for (int64_t i = 0; i < f.numel(); ++i) sq += f.data<double>()[i] * f.data<double>()[i];
    auto& v = norms[key];
    if (static_cast<int64_t>(v.size()) <= expert) v.resize(expert + 1);
    v[expert] = std::sqrt(sq);
  }
  if (!norms.empty()) std::printf("  expert weight norms (Frobenius), expert 0 first:\n");
  for (const auto& [key, v] : norms) {
    std::printf("    %-48s", key.c_str());
    for (double n : v) std::printf(" %7.3f", n);
    std::printf("\n");
  }
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
void report_routing(const std::vector<sw::LayerRouting>& routing, const Flags& flags) {
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
  if (flags.has("routing-csv")) {
    write_routing_csv(flags.value("routing-csv"), routing);
    std::printf("\nrouting written to %s\n", flags.value("routing-csv").c_str());
  }
}

int run_presets(const Flags&) {
  for (const auto& name : sw::preset_names()) std::printf("%s\n", name.c_str());
  return 0;
}

int run_config(const Flags& flags) {
  std::fputs(sw::config_to_text(load_config(flags)).c_str(), stdout);
  return 0;
}

int run_inspect(const Flags& flags) {
  if (flags.has("ckpt"))
    print_checkpoint(flags.value("ckpt"));
  else
    print_inspect(load_config(flags));
  return 0;
}

int run_forward(const Flags& flags) {
  const sw::ModelConfig config = load_config(flags);
  const int64_t batch = flags.int_value("batch", 8), input_len = flags.int_value("input-len", 128),
                target_len = flags.int_value("target-len", 32);
  const std::string text_path = flags.value("text", "/usr/share/common-licenses/GPL-3");
  const sw::Batch b = text_batch(config, flags);
  std::printf("building %s (seed %lld, %d threads)...\n", config.name().c_str(),
              static_cast<long long>(flags.int_value("seed", 0)), omp_get_max_threads());
  const sw::SwitchTransformer model(config, static_cast<uint64_t>(flags.int_value("seed", 0)));
  std::printf("%.1fM parameters; batch %lld x (%lld encoder + %lld decoder) tokens of %s\n",
              model.parameters().num_elements() / 1e6, static_cast<long long>(batch),
              static_cast<long long>(input_len), static_cast<long long>(target_len),
              text_path.c_str());
  sw::ForwardOptions options;
  options.train = flags.has("train");
  const auto start = std::chrono::steady_clock::now();
  const sw::ForwardOutput out = model.forward(b, options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("forward (%s): %.3f s, %.0f tokens/s\n", options.train ? "train" : "eval", seconds,
              static_cast<double>(batch * (input_len + target_len)) / seconds);
  std::printf("loss %.4f = ce %.4f (%lld tokens) + aux %.5f + z %.5f\n\n", out.loss, out.ce_loss,
              static_cast<long long>(out.label_tokens), out.aux_loss, out.z_loss);
  report_routing(out.routing, flags);
  return 0;
}

// Returns the exit status: 0 within tolerance, 3 outside.
// The model is the checkpoint's (--ckpt) or a fresh one of the config and --seed.
int run_validate(const Flags& flags) {
  sw::ValidationOptions options;
  options.device = sw::Device::parse(flags.value("device", "cuda:0"));
  const std::string dtype = flags.value("dtype", "f32");
  if (dtype != "f32" && dtype != "bf16")
    throw sw::Error(sw::Status::kInvalidArgument, "--dtype: f32 or bf16, got " + dtype);
  const bool bf16 = dtype == "bf16";
  options.dtype = bf16 ? sw::DType::bf16 : sw::DType::f32;
  options.tolerance = flags.double_value("tolerance", bf16 ? 5e-2 : 1e-4);
  options.min_routing_agreement = flags.double_value("min-agreement", bf16 ? 0.95 : 1.0);
  const sw::SwitchTransformer model =
      flags.has("ckpt") ? sw::model_from_checkpoint(sw::load_checkpoint(flags.value("ckpt")))
                        : sw::SwitchTransformer(load_config(flags),
                                                static_cast<uint64_t>(flags.int_value("seed", 0)));
  const sw::Batch b = text_batch(model.config(), flags);
  std::printf("validating %s%s on %s in %s against the cpu in f32...\n",
              model.config().name().c_str(), flags.has("ckpt") ? " (checkpoint)" : "",
              options.device.str().c_str(), dtype.c_str());
  const sw::ValidationReport report = sw::validate_devices(model, b, options);
  std::fputs(report.text(options).c_str(), stdout);
  return report.within_tolerance ? 0 : 3;
}

}  // namespace

std::vector<Command> model_commands() {
  return {
      {"presets", "list the compiled-in presets", {}, "", run_presets},
      {"config", "print a model config with every field", model_flags(), "", run_config},
      {"inspect",
       "a model's parameters and sparse blocks, or a checkpoint's tensors and expert norms",
       joined({model_flags(),
               {{"ckpt", "DIR", "a checkpoint (or the latest under a root); also as a bare DIR"}}}),
       "ckpt", run_inspect},
      {"forward", "one forward pass on a batch of real text: losses and per-layer routing",
       joined({model_flags(),
               batch_flags(),
               {{"train", "", "training-mode forward (dropout, jitter, train capacity)"},
                {"routing-csv", "FILE", "write per-layer, per-expert routing counts as CSV"}}}),
       "", run_forward},
      {"validate",
       "the same batch on the cpu and a device: per-block differences, routing agreement",
       joined(
           {model_flags(),
            {{"ckpt", "DIR", "a checkpoint (or the latest under a root) instead of a fresh model"},
             {"device", "D", "the device checked against the cpu (default cuda:0)"},
             {"dtype", "T", "f32 (default, TF32 off) or bf16"},
             {"tolerance", "X", "largest max relative difference (default 1e-4, bf16 5e-2)"},
             {"min-agreement", "F", "routing agreement per layer (default 1, bf16 0.95)"}},
            batch_flags()}),
       "", run_validate},
  };
}

}  // namespace sw::cli
