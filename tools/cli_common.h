// CLI11 bindings for the options every subcommand shares (DESIGN.md "Common options"), and the one
// way a mode (an enum class of the library) becomes an option.
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <utility>
#include <vector>

#include "session.h"

namespace bs {

void add_common_options(CLI::App* cmd, CommonOptions& o);

// An enum option: the word given is looked up in `choices`; any other word is refused while parsing,
// in one line naming the option, the word and the choices. --help shows the current value's word.
template <class E>
CLI::Option* add_enum_option(CLI::App* cmd, const std::string& flag, E& target,
                             const std::vector<std::pair<std::string, E>>& choices, const std::string& help) {
  std::string list, current;
  for (size_t i = 0; i < choices.size(); ++i) {
    list += (i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ") + choices[i].first;
    if (current.empty() && choices[i].second == target) current = choices[i].first;
  }
  auto parse = [&target, choices, list, flag](const std::string& word) {
    for (const auto& [name, value] : choices)
      if (word == name) {
        target = value;
        return;
      }
    throw CLI::ValidationError(flag, "'" + word + "': expected " + list);
  };
  return cmd->add_option_function<std::string>(flag, parse, help)->default_str(current);
}

}  // namespace bs
