// `switch`: the command-line front end. Subcommands:
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
//   switch train [--config FILE] [--preset P] [--set key=value]... [--out DIR] [--examples N]
//                [--resume] [--parallel dp=N[,ep=M|,mp=M]]
//       span-corruption pre-training from a TrainConfig (core/proto/libswitch.proto; default
//       the tiny preset on the fortunes corpus): a progress bar (or a line every
//       log_interval steps), held-out evaluation, <out>/metrics.jsonl, summary.json, the
//       tokenizer and the resolved config, checkpoints under <out>/checkpoints (every
//       checkpoint_interval steps and at the end); --resume continues the latest one bit for
//       bit; --examples N shows greedy span infilling. Under mpirun (or srun), --parallel
//       dp=N,ep=M trains over N x M ranks: each steps on its shard of the global batch,
//       each group of M ranks splits every sparse layer's experts; dp=N,mp=M: each group
//       of M ranks splits the attention heads and d_ff and shares one batch shard; rank 0
//       prints and writes checkpoints of the whole model, which continue at any layout
//   switch generate --ckpt DIR (--input TEXT | --file FILE) [--spm FILE] [--max-new-tokens N]
//                   [--min-new-tokens N] [--num-beams N] [--length-penalty X]
//                   [--temperature T] [--top-k K] [--top-p P] [--seed S] [--dropless]
//                   [--routing]
//       generation from a checkpoint with the decoder's key/value cache: greedy, beam
//       search, or sampling (temperature > 0)
//   switch import-hf --config config.json --weights model.safetensors|index.json|DIR --out DIR
//       an HF SwitchTransformers checkpoint into a libswitch checkpoint (HF semantics)
//   switch export-hf DIR --out HFDIR       a libswitch checkpoint as config.json + safetensors
//   switch validate [--preset P | --config F | --ckpt DIR] [--device cuda:0] [--dtype f32|bf16]
//                   [--tolerance X] [--min-agreement F] [batch options as for forward]
//       the same batch through the cpu f32 reference and the device: per-block max and mean
//       relative differences, routing agreement; exit status 3 when outside tolerance
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/data/byte_tokenizer.h"
#include "core/data/sentencepiece_tokenizer.h"
#include "core/dist/communicator.h"
#include "core/dist/layout.h"
#include "core/infer/generate.h"
#include "core/io/checkpoint.h"
#include "core/io/hf_checkpoint.h"
#include "core/model/switch_transformer.h"
#include "core/model/validate.h"
#include "core/train/pretraining_run.h"

namespace {

using Args = std::map<std::string, std::string>;

const char* kUsage =
    "usage: switch <presets | config | inspect | forward | train | generate | import-hf |\n"
    "               export-hf | validate> [options]\n"
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
    "  --config FILE      train: a TrainConfig in protobuf text format\n"
    "  --set KEY=VALUE    train: override a TrainConfig field (repeatable; model.FIELD too)\n"
    "  --out DIR          train: where metrics.jsonl and the rest go (default runs/train)\n"
    "  --examples N       train: greedy span infilling on N held-out examples at the end\n"
    "  --resume           train: continue from the latest checkpoint under --out, if any\n"
    "  --parallel L       train: the layout over the MPI ranks, dp=N,ep=M or dp=N,mp=M\n"
    "  --ckpt DIR         generate, validate: a checkpoint (or the latest under a root)\n"
    "  --input TEXT       generate: one input (<extra_id_0> marks a span to fill)\n"
    "  --file FILE        generate: one input per line\n"
    "  --spm FILE         generate: the SentencePiece model (default: the run's tokenizer.model)\n"
    "  --max-new-tokens N generate: at most N output tokens (default 32)\n"
    "  --min-new-tokens N generate: eos not before N tokens (default 0)\n"
    "  --num-beams N      generate: beam search with N beams (default 1: greedy)\n"
    "  --length-penalty X generate: beams ranked by sum(log p) / length^X (default 1)\n"
    "  --temperature T    generate: sample at temperature T (default 0: greedy)\n"
    "  --top-k K, --top-p P  generate: sample among the top K / top-p tokens\n"
    "  --dropless         generate: no token dropped by expert capacity\n"
    "  --routing          generate: each sparse layer's tokens, drops and busiest expert\n"
    "  --weights PATH     import-hf: model.safetensors, a sharded index, or their directory\n"
    "                     (with --config config.json and --out DIR)\n"
    "  --device D         validate: the device checked against the cpu (default cuda:0)\n"
    "  --dtype T          validate: f32 (default, TF32 off) or bf16\n"
    "  --tolerance X      validate: largest max relative difference (default 1e-4, bf16 5e-2)\n"
    "  --min-agreement F  validate: routing agreement per layer (default 1, bf16 0.95)\n";

Args parse_args(int argc, char** argv, std::vector<std::string>& overrides) {
  Args args;
  for (int i = 2; i < argc; ++i) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0) {
      // `switch inspect DIR`, `switch export-hf DIR`: the positional argument is a checkpoint.
      const std::string command = argv[1];
      if ((command == "inspect" || command == "export-hf") && !args.count("ckpt")) {
        args["ckpt"] = key;
        continue;
      }
      throw sw::Error(sw::Status::kInvalidArgument, "unexpected argument " + key);
    }
    key = key.substr(2);
    if (key == "train" || key == "resume" || key == "dropless" || key == "routing") {
      args[key] = "1";
    } else if (key == "set") {
      if (i + 1 >= argc) throw sw::Error(sw::Status::kInvalidArgument, "--set needs key=value");
      overrides.push_back(argv[++i]);
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

// HF checkpoint → a libswitch checkpoint directory (step 0, no optimizer state).
void run_import_hf(const Args& a) {
  for (const char* required : {"config", "weights", "out"})
    if (!a.count(required))
      throw sw::Error(sw::Status::kInvalidArgument,
                      std::string("import-hf: --") + required + " is required");
  const sw::SwitchTransformer model = sw::import_hf(a.at("config"), a.at("weights"));
  sw::Checkpoint c;
  c.model = model.config();
  for (const auto& e : model.parameters().entries()) c.parameters.push_back({e.name, e.tensor});
  const std::string dir = sw::save_checkpoint(a.at("out"), c);
  std::printf("imported %s (%.1fM parameters) into %s\n", model.config().name().c_str(),
              model.parameters().num_elements() / 1e6, dir.c_str());
}

// A libswitch checkpoint (or the latest under a root) → config.json + model.safetensors.
void run_export_hf(const Args& a) {
  if (!a.count("ckpt") || !a.count("out"))
    throw sw::Error(sw::Status::kInvalidArgument,
                    "export-hf: usage: switch export-hf DIR --out HFDIR");
  const sw::Checkpoint c = sw::load_checkpoint(a.at("ckpt"));
  const sw::SwitchTransformer model = sw::model_from_checkpoint(c);
  sw::export_hf(model, a.at("out"));
  // Settings HF has no field for come back as HF's: say which.
  std::istringstream ours(sw::config_to_text(c.model)),
      theirs(sw::config_to_text(sw::config_from_hf_json(sw::config_to_hf_json(c.model))));
  for (std::string mine, hf; std::getline(ours, mine) && std::getline(theirs, hf);)
    if (mine != hf && mine.rfind("name:", 0) != 0)
      std::printf("note: HF runs it with %s (here %s)\n", hf.c_str(), mine.c_str());
  std::printf("exported %s (step %lld) to %s/config.json and model.safetensors\n",
              c.model.name().c_str(), static_cast<long long>(c.step), a.at("out").c_str());
}

// Greedy generation from a checkpoint: each input line encoded with the run's
// SentencePiece model (or --spm), decoded back to text.
double double_arg(const Args& a, const std::string& key, double fallback) {
  const std::string v = arg(a, key, "");
  if (v.empty()) return fallback;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (*end != '\0')
    throw sw::Error(sw::Status::kInvalidArgument, "--" + key + ": not a number: " + v);
  return x;
}

void run_generate(const Args& a) {
  if (!a.count("ckpt"))
    throw sw::Error(sw::Status::kInvalidArgument, "generate: --ckpt DIR is required");
  const sw::Checkpoint c = sw::load_checkpoint(a.at("ckpt"));
  const sw::SwitchTransformer model = sw::model_from_checkpoint(c);
  // A run's tokenizer sits beside its checkpoints directory.
  std::string spm = arg(a, "spm", "");
  if (spm.empty()) {
    std::filesystem::path p = std::filesystem::absolute(a.at("ckpt"));
    while (!p.empty() && p != p.root_path() && !std::filesystem::exists(p / "tokenizer.model"))
      p = p.parent_path();
    spm = (p / "tokenizer.model").string();
  }
  const sw::SentencePieceTokenizer tokenizer = sw::SentencePieceTokenizer::load(
      spm, c.train.has_num_sentinels() ? c.train.num_sentinels() : 100);
  std::vector<std::string> inputs;
  if (a.count("input")) inputs.push_back(a.at("input"));
  if (a.count("file")) {
    std::istringstream lines(read_file(a.at("file")));
    for (std::string line; std::getline(lines, line);)
      if (!line.empty()) inputs.push_back(line);
  }
  if (inputs.empty())
    throw sw::Error(sw::Status::kInvalidArgument, "generate: give --input TEXT or --file FILE");
  sw::GenerateOptions options;
  options.max_new_tokens = int_arg(a, "max-new-tokens", 32);
  options.min_new_tokens = int_arg(a, "min-new-tokens", 0);
  options.num_beams = int_arg(a, "num-beams", 1);
  options.length_penalty = double_arg(a, "length-penalty", 1.0);
  options.temperature = double_arg(a, "temperature", 0.0);
  options.top_k = int_arg(a, "top-k", 0);
  options.top_p = double_arg(a, "top-p", 1.0);
  options.seed = static_cast<uint64_t>(int_arg(a, "seed", 0));
  options.dropless = a.count("dropless") != 0;
  options.vocab_limit = tokenizer.vocab_size();
  sw::validate(options);
  for (const std::string& text : inputs) {
    std::vector<int32_t> ids = tokenizer.encode(text);
    ids.push_back(static_cast<int32_t>(c.model.eos_token_id()));
    const sw::Tensor input =
        sw::Tensor::from_vector<int32_t>(ids, {1, static_cast<int64_t>(ids.size())});
    const sw::Tensor mask = sw::Tensor::full({1, input.dim(1)}, sw::DType::i32, 1);
    std::vector<sw::GenerationRouting> routing;
    const auto out = sw::generate(model, input, mask, options, &routing);
    std::printf("input:  %s\noutput: %s\n", text.c_str(), tokenizer.decode(out[0]).c_str());
    if (a.count("routing"))
      for (const sw::GenerationRouting& r : routing)
        std::printf("  routing %s block %lld: %lld tokens, %.1f%% dropped, busiest expert %.0f%%\n",
                    sw::stack_name(r.stack), static_cast<long long>(r.block),
                    static_cast<long long>(r.tokens()), 100 * r.dropped_fraction(),
                    100 * r.max_share());
    std::printf("\n");
  }
}

sw::Batch text_batch(const sw::ModelConfig& config, const Args& a) {
  return sw::make_continuation_batch(read_file(arg(a, "text", "/usr/share/common-licenses/GPL-3")),
                                     int_arg(a, "batch", 8), int_arg(a, "input-len", 128),
                                     int_arg(a, "target-len", 32), config);
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
  const auto answers = sw::generate(run.model(), ids, mask, options);
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

int run_train_on(sw::Communicator& world, const Args& a, const std::vector<std::string>& overrides);

// Training under a launcher: every rank runs run_train_on; an error on any rank ends all
// of them (the others would wait in their next collective).
int run_train(const Args& a, const std::vector<std::string>& overrides) {
  const std::unique_ptr<sw::Communicator> world =
      sw::launched_by_mpi() ? sw::mpi_world() : sw::local_communicator();
  if (world->size() == 1) return run_train_on(*world, a, overrides);
  if (world->rank() != 0 && !std::freopen("/dev/null", "w", stdout))
    throw sw::Error(sw::Status::kIo, "cannot silence rank " + std::to_string(world->rank()));
  try {
    return run_train_on(*world, a, overrides);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "switch train: rank %d of %d: %s\n", world->rank(), world->size(),
                 e.what());
    world->abort(1);
  }
  return 1;  // not reached: abort ends the process
}

int run_train_on(sw::Communicator& world, const Args& a,
                 const std::vector<std::string>& overrides) {
  const sw::ParallelLayout layout = sw::parse_parallel_layout(
      arg(a, "parallel", "dp=" + std::to_string(world.size())), world.size());
  sw::TrainConfig config =
      a.count("config") ? sw::train_config_from_text(read_file(a.at("config"))) : sw::TrainConfig();
  if (a.count("preset")) config.set_model_preset(a.at("preset"));
  for (const std::string& o : overrides) sw::apply_override(config, o);
  const std::string out = arg(a, "out", "runs/train");
  const bool terminal = isatty(fileno(stdout));
  std::printf("preparing: corpus %s, tokenizer, data (output in %s)...\n", config.corpus().c_str(),
              out.c_str());
  std::fflush(stdout);
  const auto start = std::chrono::steady_clock::now();
  const bool resume = a.count("resume") != 0;
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
      "training %s: %.2fM parameters, %lld experts, batch %lld x (%lld + %lld), %lld steps\n",
      c.model().name().c_str(), run.model().parameters().num_elements() / 1e6,
      static_cast<long long>(c.model().num_experts()), static_cast<long long>(c.batch_size()),
      static_cast<long long>(c.input_length()), static_cast<long long>(c.target_length()),
      static_cast<long long>(c.steps()));
  if (run.steps_done() == 0) report_eval(run.evaluate(), 0, false);
  double seconds = 0, tokens = 0;
  sw::EvalMetrics last_eval;
  sw::TrainMetrics m;
  while (run.steps_done() < c.steps()) {
    m = run.step();
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
  // Every rank generates (expert-parallel layers need them all); rank 0 reports.
  const int64_t examples = int_arg(a, "examples", 0);
  const std::string infill = examples > 0 ? infill_examples(run, examples) : "";
  if (world.rank() != 0) return 0;  // rank 0 reports and writes the summary
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "final eval loss %.4f (ce %.4f), train tokens/s %.0f, dropped %.1f%% (train) %.1f%% (eval), "
      "%.0f s in all\n",
      last_eval.loss, last_eval.ce, tokens / seconds, 100 * m.dropped_fraction,
      100 * last_eval.dropped_fraction, wall);
  std::ofstream(out + "/summary.json")
      << "{\"model\": \"" << c.model().name() << "\", \"experts\": " << c.model().num_experts()
      << ", \"sparse\": "
      << (c.model().encoder_sparse_step() || c.model().decoder_sparse_step() ? "true" : "false")
      << ", \"parameters\": " << run.model().parameters().num_elements()
      << ", \"steps\": " << c.steps() << ", \"final_eval_loss\": " << last_eval.loss
      << ", \"final_eval_ce\": " << last_eval.ce << ", \"tokens_per_s\": " << tokens / seconds
      << ", \"train_dropped\": " << m.dropped_fraction
      << ", \"eval_dropped\": " << last_eval.dropped_fraction << ", \"seconds\": " << wall << "}\n";
  if (examples > 0) {
    std::ofstream(out + "/infill_examples.txt") << infill;
    std::printf("\nspan infilling on held-out text (greedy):\n\n%s", infill.c_str());
  }
  std::printf("metrics in %s/metrics.jsonl, checkpoint %s\n", out.c_str(),
              sw::latest_checkpoint(run.checkpoint_root()).c_str());
  return 0;
}

// Returns the exit status: 0 within tolerance, 3 outside.
// The model is the checkpoint's (--ckpt) or a fresh one of the config and --seed.
int run_validate(const Args& a) {
  sw::ValidationOptions options;
  options.device = sw::Device::parse(arg(a, "device", "cuda:0"));
  const std::string dtype = arg(a, "dtype", "f32");
  if (dtype != "f32" && dtype != "bf16")
    throw sw::Error(sw::Status::kInvalidArgument, "--dtype: f32 or bf16, got " + dtype);
  const bool bf16 = dtype == "bf16";
  options.dtype = bf16 ? sw::DType::bf16 : sw::DType::f32;
  options.tolerance = double_arg(a, "tolerance", bf16 ? 5e-2 : 1e-4);
  options.min_routing_agreement = double_arg(a, "min-agreement", bf16 ? 0.95 : 1.0);
  const sw::SwitchTransformer model =
      a.count("ckpt")
          ? sw::model_from_checkpoint(sw::load_checkpoint(a.at("ckpt")))
          : sw::SwitchTransformer(load_config(a), static_cast<uint64_t>(int_arg(a, "seed", 0)));
  const sw::Batch b = text_batch(model.config(), a);
  std::printf("validating %s%s on %s in %s against the cpu in f32...\n",
              model.config().name().c_str(), a.count("ckpt") ? " (checkpoint)" : "",
              options.device.str().c_str(), dtype.c_str());
  const sw::ValidationReport report = sw::validate_devices(model, b, options);
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
    std::vector<std::string> overrides;
    const Args a = parse_args(argc, argv, overrides);
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
      if (a.count("ckpt"))
        print_checkpoint(a.at("ckpt"));
      else
        print_inspect(load_config(a));
    } else if (command == "forward") {
      print_forward(load_config(a), a);
    } else if (command == "train") {
      return run_train(a, overrides);
    } else if (command == "generate") {
      run_generate(a);
    } else if (command == "import-hf") {
      run_import_hf(a);
    } else if (command == "export-hf") {
      run_export_hf(a);
    } else if (command == "validate") {
      return run_validate(a);
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
