// switch upcycle --from DIR --experts E --out DIR [--sparse-step N] [--seed S]
//                [--set key=value]...
//     a Switch model initialised from a trained dense checkpoint (sparse upcycling): every
//     expert of a sparse block a copy of that block's dense feed-forward, the routers
//     fresh, everything else copied; saved as a checkpoint under --out, with the dense
//     run's tokenizer.model beside it when there is one (so `switch generate` reads it)
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "core/io/checkpoint.h"
#include "core/model/upcycle.h"

namespace sw::cli {

std::string run_tokenizer(const std::string& checkpoint) {
  // A run's tokenizer sits beside its checkpoints folder or inside it.
  namespace fs = std::filesystem;
  fs::path from = fs::absolute(checkpoint);
  while (!from.empty() && from != from.root_path() && !fs::exists(from / "tokenizer.model"))
    from = from.parent_path();
  return fs::exists(from / "tokenizer.model") ? (from / "tokenizer.model").string() : "";
}

namespace {

int run_upcycle(const Flags& flags) {
  for (const char* required : {"from", "experts", "out"})
    if (!flags.has(required))
      throw sw::Error(sw::Status::kInvalidArgument,
                      std::string("upcycle: --") + required + " is required");
  const sw::Checkpoint c = sw::load_checkpoint(flags.value("from"));
  const sw::SwitchTransformer dense = sw::model_from_checkpoint(c);
  sw::ModelConfig sparse = dense.config();
  sparse.set_num_experts(flags.int_value("experts", 8));
  const int64_t step = flags.int_value("sparse-step", 2);
  sparse.set_encoder_sparse_step(step);
  sparse.set_decoder_sparse_step(step);
  for (const std::string& kv : flags.values("set")) sw::merge_override(sparse, kv);
  sparse.set_name(dense.config().name() + "-upcycled-" + std::to_string(sparse.num_experts()));
  sw::validate(sparse);
  const sw::SwitchTransformer model =
      sw::upcycle(dense, sparse, static_cast<uint64_t>(flags.int_value("seed", 0)));
  sw::Checkpoint out;
  out.model = model.config();
  out.seed = model.seed();
  for (const auto& e : model.parameters().entries()) out.parameters.push_back({e.name, e.tensor});
  const std::string dir = sw::save_checkpoint(flags.value("out"), out);
  const std::string tokenizer = run_tokenizer(flags.value("from"));
  if (!tokenizer.empty())
    std::filesystem::copy_file(tokenizer,
                               std::filesystem::path(flags.value("out")) / "tokenizer.model",
                               std::filesystem::copy_options::overwrite_existing);
  std::printf(
      "upcycled %s (%.2fM parameters) into %lld experts per sparse block: %.2fM "
      "parameters in %s\n",
      dense.config().name().c_str(), dense.parameters().num_elements() / 1e6,
      static_cast<long long>(sparse.num_experts()), model.parameters().num_elements() / 1e6,
      dir.c_str());
  return 0;
}

}  // namespace

Command upcycle_command() {
  return {"upcycle",
          "a Switch model from a trained dense checkpoint: experts copied from its FFNs",
          {{"from", "DIR", "the dense model's checkpoint (or the latest under a root)"},
           {"experts", "E", "experts per sparse block"},
           {"out", "DIR", "where the upcycled checkpoint goes"},
           {"sparse-step", "N", "one sparse block in N in both stacks (default 2)"},
           {"seed", "S", "the routers' initialisation seed (default 0)"},
           {"set", "KEY=VALUE", "another model field of the sparse model (repeatable)"}},
          "",
          run_upcycle};
}

}  // namespace sw::cli
