// HuggingFace SwitchTransformers checkpoints in and out:
//   switch import-hf --config config.json --weights model.safetensors|index.json|DIR --out DIR
//       an HF SwitchTransformers checkpoint into a libswitch checkpoint (HF semantics)
//   switch export-hf DIR --out HFDIR       a libswitch checkpoint as config.json + safetensors
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/io/checkpoint.h"
#include "core/io/hf_checkpoint.h"
#include "core/model/switch_transformer.h"

namespace sw::cli {
namespace {

// HF checkpoint → a libswitch checkpoint directory (step 0, no optimizer state).
int run_import_hf(const Flags& flags) {
  for (const char* required : {"config", "weights", "out"})
    if (!flags.has(required))
      throw sw::Error(sw::Status::kInvalidArgument,
                      std::string("import-hf: --") + required + " is required");
  sw::ModelConfig overrides;
  for (const std::string& kv : flags.values("set")) sw::merge_override(overrides, kv);
  const sw::SwitchTransformer model =
      sw::import_hf(flags.value("config"), flags.value("weights"), overrides);
  sw::Checkpoint c;
  c.model = model.config();
  for (const auto& e : model.parameters().entries()) c.parameters.push_back({e.name, e.tensor});
  const std::string dir = sw::save_checkpoint(flags.value("out"), c);
  std::printf("imported %s (%.1fM parameters) into %s\n", model.config().name().c_str(),
              model.parameters().num_elements() / 1e6, dir.c_str());
  return 0;
}

// A libswitch checkpoint (or the latest under a root) → config.json + model.safetensors.
int run_export_hf(const Flags& flags) {
  if (!flags.has("ckpt") || !flags.has("out"))
    throw sw::Error(sw::Status::kInvalidArgument,
                    "export-hf: usage: switch export-hf DIR --out HFDIR");
  const sw::Checkpoint c = sw::load_checkpoint(flags.value("ckpt"));
  const sw::SwitchTransformer model = sw::model_from_checkpoint(c);
  sw::export_hf(model, flags.value("out"), flags.has("allow-routing-change"));
  // Settings HF has no field for come back as HF's: say which.
  std::istringstream ours(sw::config_to_text(c.model)),
      theirs(sw::config_to_text(sw::config_from_hf_json(sw::config_to_hf_json(c.model))));
  for (std::string mine, hf; std::getline(ours, mine) && std::getline(theirs, hf);)
    if (mine != hf && mine.rfind("name:", 0) != 0)
      std::printf("note: HF runs it with %s (here %s)\n", hf.c_str(), mine.c_str());
  std::printf("exported %s (step %lld) to %s/config.json and model.safetensors\n",
              c.model.name().c_str(), static_cast<long long>(c.step), flags.value("out").c_str());
  return 0;
}

}  // namespace

std::vector<Command> hf_commands() {
  return {
      {"import-hf",
       "an HF SwitchTransformers checkpoint into a libswitch checkpoint (HF semantics)",
       {{"config", "FILE", "the HF config.json"},
        {"weights", "PATH", "model.safetensors, a sharded index, or their directory"},
        {"out", "DIR", "where the libswitch checkpoint goes"},
        {"set", "KEY=VALUE",
         "a model field over the HF config's (repeatable), e.g. aux_loss_mode=AUX_PER_LAYER"}},
       "",
       run_import_hf},
      {"export-hf",
       "a libswitch checkpoint as HF config.json + model.safetensors",
       {{"ckpt", "DIR", "a checkpoint (or the latest under a root); also as a bare DIR"},
        {"out", "HFDIR", "where config.json and model.safetensors go"},
        {"allow-routing-change", "",
         "write a model transformers would route otherwise (capacity factor, batch groups)"}},
       "ckpt",
       run_export_hf},
  };
}

}  // namespace sw::cli
