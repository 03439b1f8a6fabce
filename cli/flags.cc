#include "cli/flags.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/tensor/error.h"

namespace sw::cli {
namespace {

// Levenshtein distance: insertions, deletions and substitutions of one character.
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean --batch?)": the flag of `flags` nearest to `name`.
std::string suggestion(const std::string& name, const std::vector<Flag>& flags) {
  if (flags.empty()) return " (this command takes no flags)";
  std::vector<std::string> names;
  for (const Flag& f : flags) names.push_back(f.name);
  return " (did you mean --" + nearest_name(name, names) + "?)";
}

const Flag* find_flag(const std::vector<Flag>& flags, const std::string& arg) {
  if (arg.rfind("--", 0) != 0) return nullptr;
  for (const Flag& f : flags)
    if (f.name == arg.substr(2)) return &f;
  return nullptr;
}

bool is_help(const std::string& arg) { return arg == "--help" || arg == "-h"; }

}  // namespace

std::string nearest_name(const std::string& name, const std::vector<std::string>& candidates) {
  const std::string* nearest = &candidates.front();
  for (const std::string& c : candidates)
    if (edit_distance(name, c) < edit_distance(name, *nearest)) nearest = &c;
  return *nearest;
}

const Flag kThreadsFlag = {"threads", "T", "CPU threads (default: all)"};

Flags Flags::parse(const std::vector<Flag>& flags, const std::string& positional,
                   const std::vector<std::string>& args) {
  Flags parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (is_help(arg)) {
      parsed.help_requested_ = true;
      return parsed;
    }
    if (arg.rfind("--", 0) != 0) {
      if (positional.empty() || parsed.has(positional))
        throw UsageError("unexpected argument " + arg);
      parsed.values_[positional].push_back(arg);
      continue;
    }
    const Flag* flag = find_flag(flags, arg);
    if (!flag) throw UsageError("unknown flag " + arg + suggestion(arg.substr(2), flags));
    if (flag->value_name.empty()) {
      parsed.values_[flag->name].push_back("1");
      continue;
    }
    // The next argument being one of these flags means the value was left out.
    if (i + 1 == args.size() || find_flag(flags, args[i + 1]) || is_help(args[i + 1]))
      throw UsageError(arg + " needs a value (" + flag->value_name + ")");
    parsed.values_[flag->name].push_back(args[++i]);
  }
  return parsed;
}

std::string Flags::value(const std::string& name, const std::string& fallback) const {
  const auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.back();
}

std::vector<std::string> Flags::values(const std::string& name) const {
  const auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>() : it->second;
}

int64_t Flags::int_value(const std::string& name, int64_t fallback) const {
  const std::string v = value(name);
  if (v.empty()) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (*end != '\0')
    throw sw::Error(sw::Status::kInvalidArgument, "--" + name + ": not an integer: " + v);
  return x;
}

double Flags::double_value(const std::string& name, double fallback) const {
  const std::string v = value(name);
  if (v.empty()) return fallback;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (*end != '\0')
    throw sw::Error(sw::Status::kInvalidArgument, "--" + name + ": not a number: " + v);
  return x;
}

std::string flags_help(const std::vector<Flag>& flags) {
  std::vector<std::string> names;
  size_t width = 0;
  for (const Flag& f : flags) {
    names.push_back("--" + f.name + (f.value_name.empty() ? "" : " " + f.value_name));
    width = std::max(width, names.back().size());
  }
  std::string text;
  for (size_t i = 0; i < flags.size(); ++i)
    text += "  " + names[i] + std::string(width - names[i].size() + 2, ' ') + flags[i].help + "\n";
  return text;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw sw::Error(sw::Status::kNotFound, "cannot read " + path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace sw::cli
