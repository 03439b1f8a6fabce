// switch generate --ckpt DIR (--input TEXT | --file FILE) [--spm FILE] [--max-new-tokens N]
//                 [--min-new-tokens N] [--num-beams N] [--length-penalty X]
//                 [--temperature T] [--top-k K] [--top-p P] [--seed S] [--dropless]
//                 [--routing] [--device cpu|cuda:N] [--dtype f32|f64|bf16]
//     generation from a checkpoint with the decoder's key/value cache: greedy, beam
//     search, or sampling (temperature > 0)
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/data/sentencepiece_tokenizer.h"
#include "core/infer/generate.h"
#include "core/io/checkpoint.h"
#include "core/model/switch_transformer.h"

namespace sw::cli {
namespace {

// Each input line encoded with the run's SentencePiece model (or --spm), the output
// decoded back to text.
int run_generate(const Flags& flags) {
  if (!flags.has("ckpt"))
    throw sw::Error(sw::Status::kInvalidArgument, "generate: --ckpt DIR is required");
  // The device first: one that is not here fails before any file is read.
  const sw::Device device = sw::Device::parse(flags.value("device", "cpu"));
  sw::require_device(device);
  const sw::DType dtype = sw::model_dtype_from_name(flags.value("dtype", "f32"));
  const sw::Checkpoint c = sw::load_checkpoint(flags.value("ckpt"));
  sw::SwitchTransformer loaded = sw::model_from_checkpoint(c);
  const sw::SwitchTransformer model = device.is_cpu() && dtype == sw::DType::f32
                                          ? std::move(loaded)
                                          : loaded.copy_to(device, dtype);
  // A run's tokenizer sits beside its checkpoints directory.
  std::string spm = flags.value("spm");
  if (spm.empty()) {
    std::filesystem::path p = std::filesystem::absolute(flags.value("ckpt"));
    while (!p.empty() && p != p.root_path() && !std::filesystem::exists(p / "tokenizer.model"))
      p = p.parent_path();
    spm = (p / "tokenizer.model").string();
  }
  const sw::SentencePieceTokenizer tokenizer = sw::SentencePieceTokenizer::load(
      spm, c.train.has_num_sentinels() ? c.train.num_sentinels() : 100);
  std::vector<std::string> inputs;
  if (flags.has("input")) inputs.push_back(flags.value("input"));
  if (flags.has("file")) {
    std::istringstream lines(read_file(flags.value("file")));
    for (std::string line; std::getline(lines, line);)
      if (!line.empty()) inputs.push_back(line);
  }
  if (inputs.empty())
    throw sw::Error(sw::Status::kInvalidArgument, "generate: give --input TEXT or --file FILE");
  sw::GenerateOptions options;
  options.max_new_tokens = flags.int_value("max-new-tokens", 32);
  options.min_new_tokens = flags.int_value("min-new-tokens", 0);
  options.num_beams = flags.int_value("num-beams", 1);
  options.length_penalty = flags.double_value("length-penalty", 1.0);
  options.temperature = flags.double_value("temperature", 0.0);
  options.top_k = flags.int_value("top-k", 0);
  options.top_p = flags.double_value("top-p", 1.0);
  options.seed = static_cast<uint64_t>(flags.int_value("seed", 0));
  options.dropless = flags.has("dropless");
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
    if (flags.has("routing"))
      for (const sw::GenerationRouting& r : routing)
        std::printf("  routing %s block %lld: %lld tokens, %.1f%% dropped, busiest expert %.0f%%\n",
                    sw::stack_name(r.stack), static_cast<long long>(r.block),
                    static_cast<long long>(r.tokens()), 100 * r.dropped_fraction(),
                    100 * r.max_share());
    std::printf("\n");
  }
  return 0;
}

}  // namespace

Command generate_command() {
  return {"generate",
          "text from a checkpoint: greedy, beam search or sampling",
          {{"ckpt", "DIR", "a checkpoint (or the latest under a root)"},
           {"input", "TEXT", "one input (<extra_id_0> marks a span to fill)"},
           {"file", "FILE", "one input per line"},
           {"spm", "FILE", "the SentencePiece model (default: the run's tokenizer.model)"},
           {"max-new-tokens", "N", "at most N output tokens (default 32)"},
           {"min-new-tokens", "N", "eos not before N tokens (default 0)"},
           {"num-beams", "N", "beam search with N beams (default 1: greedy)"},
           {"length-penalty", "X", "beams ranked by sum(log p) / length^X (default 1)"},
           {"temperature", "T", "sample at temperature T (default 0: greedy)"},
           {"top-k", "K", "sample among the top K tokens"},
           {"top-p", "P", "sample among the top-p tokens"},
           {"seed", "S", "sampling seed (default 0)"},
           {"dropless", "", "no token dropped by expert capacity"},
           {"routing", "", "each sparse layer's tokens, drops and busiest expert"},
           {"device", "D", "cpu (default) or cuda:N"},
           {"dtype", "T", "f32 (default), f64 (cpu) or bf16 (GPU)"},
           kThreadsFlag},
          "",
          run_generate};
}

}  // namespace sw::cli
