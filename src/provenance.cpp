// provenance.h.
#include "provenance.h"

namespace bs {

namespace {
std::string& stored() {
  static std::string what;
  return what;
}
}  // namespace

void set_invocation(std::string what) { stored() = std::move(what); }
const std::string& invocation() { return stored(); }

std::vector<std::pair<std::string, std::string>> provenance() {
  return {{"blocksharp_version", BLOCKSHARP_VERSION}, {"command_line", invocation()}};
}

}  // namespace bs
