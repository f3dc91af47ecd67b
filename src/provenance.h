// What made an output: blocksharp's version and the command line that ran it. Every output file
// carries these (HDF5 root attributes, JSON keys) from this one list.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace bs {

// The command line (the CLI's main fills it; empty when the library is called from elsewhere).
std::string& command_line();

// {"blocksharp_version", ...}, {"command_line", ...}.
std::vector<std::pair<std::string, std::string>> provenance();

}  // namespace bs
