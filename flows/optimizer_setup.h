// What an optimizer is built from besides its hyperparameters: the model's named tensors and the
// configs given to it (files, or JSON already in memory, as Python's dicts), checked against the
// registry's accepted kinds and the model and parsed once into typed structs. `blocksharp train` and
// the Python module (blocksharp.optim) both build their optimizers through it.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "blockwise_lr.h"
#include "config_file.h"
#include "network.h"
#include "optimizer.h"

namespace bs {

// One config: a file, or JSON in memory. `where` names it in errors (the path, or "config dict").
struct ConfigSource {
  std::string where;
  std::optional<json> value;  // unset: read `where` as a file (with its output-set check)
};

struct OptimizerSetup {
  OptimizerInputs inputs;                // names, tensors, the Adam-mini partition, SGD-SaI g-SNRs
  std::optional<BlockwiseLr> blockwise;  // blockwise_lr's multipliers and slices
  std::string blockwise_where;
};

// The registry entry of `optimizer` decides which config kinds are accepted (one blockwise_lr at most)
// and whether a partition is needed: adam_mini.json's, else the official rules on `info`'s sizes.
OptimizerSetup optimizer_setup(const std::string& optimizer, const NamedTensors& params, const ModelInfo& info,
                               const std::vector<ConfigSource>& configs);

}  // namespace bs
