// `switch`: the command-line front end. Each subcommand, with the flags it takes, lives in
// its group's file (commands.h); this one dispatches to them, prints the top-level help and
// reports errors. `switch <command> --help` lists a subcommand's flags.
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/tensor/error.h"

namespace {

using sw::cli::Command;

// The dispatch table, in the order `switch --help` lists it.
std::vector<Command> all_commands() {
  std::vector<Command> commands = sw::cli::model_commands();
  commands.push_back(sw::cli::train_command());
  commands.push_back(sw::cli::distill_command());
  commands.push_back(sw::cli::generate_command());
  commands.push_back(sw::cli::upcycle_command());
  commands.push_back(sw::cli::plan_command());
  for (const Command& c : sw::cli::hf_commands()) commands.push_back(c);
  return commands;
}

std::string usage(const std::vector<Command>& commands) {
  size_t width = 0;
  for (const Command& c : commands) width = std::max(width, c.name.size());
  std::string text = "usage: switch <command> [flags]; switch <command> --help lists its flags\n";
  for (const Command& c : commands)
    text += "  " + c.name + std::string(width - c.name.size() + 2, ' ') + c.summary + "\n";
  return text;
}

std::string command_help(const Command& command) {
  std::string text = "usage: switch " + command.name;
  for (const sw::cli::Flag& f : command.flags)
    if (f.name == command.positional) text += " [" + f.value_name + "]";
  if (!command.flags.empty()) text += " [flags]";
  return text + "\n" + command.summary + "\n" + sw::cli::flags_help(command.flags);
}

void set_threads(int64_t threads) {
  if (threads < 1 || threads > 4096)
    throw sw::Error(sw::Status::kInvalidArgument, "--threads: must be in [1, 4096]");
  omp_set_num_threads(static_cast<int>(threads));
}

// libgomp's threads spin ~300k rounds at every barrier before they sleep, and a hypervisor
// deschedules a vCPU that spins (pause-loop exiting): on this project's 2-vCPU machines a
// forward made of many small parallel regions ran 2x slower for it (docs/PERF.md, "OpenMP
// spinning"). libgomp reads its settings when it loads, before main, so a run without
// GOMP_SPINCOUNT or OMP_WAIT_POLICY sets a short spin and starts itself again.
void shorten_openmp_spinning(char** argv) {
  if (std::getenv("GOMP_SPINCOUNT") || std::getenv("OMP_WAIT_POLICY")) return;
  setenv("GOMP_SPINCOUNT", "10000", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: run on with the default
}

}  // namespace

int main(int argc, char** argv) {
  shorten_openmp_spinning(argv);
  const std::vector<Command> commands = all_commands();
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(usage(commands).c_str(), argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  const auto command = std::find_if(commands.begin(), commands.end(),
                                    [&](const Command& c) { return c.name == name; });
  if (command == commands.end()) {
    std::vector<std::string> names;
    for (const Command& c : commands) names.push_back(c.name);
    std::fprintf(stderr, "switch: unknown command \"%s\" (did you mean %s?)\n%s", name.c_str(),
                 sw::cli::nearest_name(name, names).c_str(), usage(commands).c_str());
    return 2;
  }
  try {
    const sw::cli::Flags flags = sw::cli::Flags::parse(
        command->flags, command->positional, std::vector<std::string>(argv + 2, argv + argc));
    if (flags.help_requested()) {
      std::fputs(command_help(*command).c_str(), stdout);
      return 0;
    }
    if (flags.has("threads")) set_threads(flags.int_value("threads", 1));
    return command->run(flags);
  } catch (const sw::cli::UsageError& e) {
    std::fprintf(stderr, "switch %s: %s\n", name.c_str(), e.what());
    return 2;
  } catch (const sw::Error& e) {
    std::fprintf(stderr, "switch %s: %s: %s\n", name.c_str(), sw::status_name(e.status()),
                 e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "switch %s: %s\n", name.c_str(), e.what());
    return 1;
  }
}
