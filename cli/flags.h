// Command-line flags. Each subcommand declares the flags it takes and its arguments are
// parsed against that list, so a misspelt flag, or one meant for another subcommand, is an
// error naming the nearest flag rather than silently ignored.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace sw::cli {

// One flag: `--name VALUE`, or `--name` alone when it has no value name.
struct Flag {
  std::string name;        // without the dashes
  std::string value_name;  // what the value is, for help ("FILE", "N"); "" takes no value
  std::string help;        // one line
};

// --threads: taken by the subcommands that compute; applied before they run. (Used only
// from functions, never from another file's static initializers.)
extern const Flag kThreadsFlag;

// A command line that does not fit the subcommand's flags (reported with exit status 2).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The flags given to one subcommand.
class Flags {
 public:
  // The arguments after the subcommand's name, against its flags. A bare argument is the
  // value of the `positional` flag ("": none taken); --help (or -h) ends parsing with
  // help_requested(). UsageError for an unknown flag (naming the nearest of `flags`), a
  // missing value or a stray argument.
  static Flags parse(const std::vector<Flag>& flags, const std::string& positional,
                     const std::vector<std::string>& args);

  bool help_requested() const { return help_requested_; }
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  // The last value given ("1" for a flag without a value), or fallback.
  std::string value(const std::string& name, const std::string& fallback = "") const;
  // Every value given, in order (a repeatable flag such as --set).
  std::vector<std::string> values(const std::string& name) const;
  // The value as a number; fallback when absent or empty, sw::Error when not a number.
  int64_t int_value(const std::string& name, int64_t fallback) const;
  double double_value(const std::string& name, double fallback) const;

 private:
  std::map<std::string, std::vector<std::string>> values_;
  bool help_requested_ = false;
};

// `switch <command> --help`: one line per flag, its value name and help aligned.
std::string flags_help(const std::vector<Flag>& flags);

// The candidate nearest to `name` by edit distance, the first of equals (candidates: not
// empty).
std::string nearest_name(const std::string& name, const std::vector<std::string>& candidates);

// The contents of a file a flag names.
std::string read_file(const std::string& path);

}  // namespace sw::cli
