// CLI11 bindings for the options every subcommand shares (DESIGN.md "Common options").
#pragma once
#include <CLI/CLI.hpp>

#include "session.h"

namespace bs {

void add_common_options(CLI::App* cmd, CommonOptions& o);

}  // namespace bs
