// Where scripts/setup.sh puts data sets and tokenizer files (read by data.cpp and tokenizer.cpp).
#pragma once
#include <string>

namespace bs {

// $BLOCKSHARP_CACHE, else $XDG_CACHE_HOME/blocksharp, else ~/.cache/blocksharp.
std::string data_cache_dir();

}  // namespace bs
