// data_cache_dir (cache_dir.h).
#include "cache_dir.h"

#include <cstdlib>

namespace bs {

std::string data_cache_dir() {
  if (const char* c = std::getenv("BLOCKSHARP_CACHE"); c && *c) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/blocksharp";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.cache/blocksharp";
}

}  // namespace bs
