// Shared by the libFuzzer harnesses: a tiny GPT-2 (the model every fuzzed file is read against) and
// the fuzz input written to a file, since the readers under test take paths, as users give them.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "models/model_zoo.h"
#include "network.h"

namespace bs::fuzz {

inline Network& tiny_model() {
  static std::unique_ptr<Network> net = [] {
    torch::set_num_threads(1);
    const ModelConfig cfg =
        resolve_model_config("gpt2-tiny", {"n_layer=1", "dim=8", "n_heads=2", "seq_len=4", "vocab=16"}, 0, 0);
    return build_network("gpt2-tiny", cfg, 0);
  }();
  return *net;
}

// Writes the input to a file unique to this process (suffix `ext`) and returns its path.
inline std::string input_file(const uint8_t* data, size_t size, const std::string& ext) {
  static const std::string path = "/tmp/blocksharp-fuzz-" + std::to_string(getpid()) + ext;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}

}  // namespace bs::fuzz
