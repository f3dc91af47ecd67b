// CLI11 bindings for the options every subcommand shares (DESIGN.md "Common options"), and the one
// way a mode (an enum class of the library) becomes an option.
#pragma once
#include <CLI/CLI.hpp>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "session.h"
#include "words.h"

namespace bs {

void add_common_options(CLI::App* cmd, CommonOptions& o);

// This executable's path, for a command that runs it again in a child process (inside std::system or
// popen, /proc/self/exe would name the shell); `who` names the command in the error.
std::string self_path(const std::string& who);

// Refuses a count below 1: "FLAG must be >= 1, got V" for the first such (flag, value).
void require_counts(std::initializer_list<std::pair<const char*, int64_t>> counts);

// Refuses a negative value: "FLAG must be >= 0 (0: ZERO_MEANS), got V" (without the parenthesis when
// zero_means is null).
void require_non_negative(const char* flag, int64_t v, const char* zero_means = nullptr);

// Refuses a --seq-len longer than a model's context: "--seq-len N exceeds the context of MODEL (C)HINT",
// MODEL as the caller names it ("model 'gpt2-tiny'", or a checkpoint's path quoted).
void require_within_context(int64_t seq_len, int64_t context, const std::string& model, const std::string& hint = "");

// Refuses a value that is not a positive finite number: "FLAG must be WHAT, got V" (V as %g: -1, nan).
void require_positive(const std::string& flag, double v, const std::string& what = "a positive number");

// An enum option: the word given is looked up in `choices`; any other word is refused while parsing,
// in one line naming the option, the word and the choices. --help shows the current value's word.
template <class E>
CLI::Option* add_enum_option(CLI::App* cmd, const std::string& flag, E& target, const Words<E>& choices,
                             const std::string& help) {
  std::string current;
  for (const auto& [name, value] : choices)
    if (current.empty() && value == target) current = name;
  auto parse = [&target, choices, flag](const std::string& word) {
    for (const auto& [name, value] : choices)
      if (word == name) {
        target = value;
        return;
      }
    throw CLI::ValidationError(flag, "'" + word + "': expected " + word_list(choices));
  };
  return cmd->add_option_function<std::string>(flag, parse, help)->default_str(current);
}

// --curvature (profile, structure) and --trace-curvature (train): which matrix is measured.
inline constexpr const char* kCurvatureHelp =
    "hessian, ggn (Gauss-Newton J^T H_L J), fisher (labels sampled from the model, seeded) or empirical-fisher "
    "(true labels)";

}  // namespace bs
