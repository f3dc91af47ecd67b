// provenance.h.
#include "provenance.h"

namespace bs {

std::string& command_line() {
  static std::string line;
  return line;
}

std::vector<std::pair<std::string, std::string>> provenance() {
  return {{"blocksharp_version", BLOCKSHARP_VERSION}, {"command_line", command_line()}};
}

}  // namespace bs
