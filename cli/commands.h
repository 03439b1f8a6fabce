// The subcommands of `switch`, one file per group; switch_main.cc dispatches to them.
#pragma once

#include <string>
#include <vector>

#include "cli/flags.h"

namespace sw::cli {

struct Command {
  std::string name;
  std::string summary;       // one line for `switch --help`
  std::vector<Flag> flags;   // every flag it takes
  std::string positional;    // the flag a bare argument gives (`switch inspect DIR`); "" none
  int (*run)(const Flags&);  // returns the exit status
};

// presets, config, inspect, forward, validate (model_commands.cc).
std::vector<Command> model_commands();
Command train_command();
Command distill_command();
Command generate_command();
Command upcycle_command();
Command plan_command();
// The tokenizer.model of the run a checkpoint belongs to (beside or above it), "" if none.
std::string run_tokenizer(const std::string& checkpoint);
// import-hf, export-hf (hf_commands.cc).
std::vector<Command> hf_commands();

}  // namespace sw::cli
