// What made an output: blocksharp's version and what started the process (the front end says: the
// CLI its command line, the Python module its call). Every output file carries these (HDF5 root
// attributes, JSON keys) from this one list.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace bs {

// Set once by the front end; empty when nobody said.
void set_invocation(std::string what);
const std::string& invocation();

// {"blocksharp_version", ...}, {"command_line", invocation()}.
std::vector<std::pair<std::string, std::string>> provenance();

}  // namespace bs
