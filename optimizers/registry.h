// The optimizer registry: everything the library and the CLI know about an optimizer, in one row per
// optimizer (registry.cpp). `make_optimizer`, `default_options` and `optimizer_names` (optimizer.h),
// the training loop's config checks and default partition, `train --help` and the README's optimizer
// table (`train --list-optimizers`) all read it. Adding an optimizer: its file (a class and a factory
// `make_x(const OptimizerInputs&, const OptimizerOptions&)`) and one row in registry.cpp.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "optimizer.h"

namespace bs {

struct OptimizerEntry {
  using Factory = std::function<std::unique_ptr<Optimizer>(const OptimizerInputs&, const OptimizerOptions&)>;
  std::string name;                  // --optimizer
  Message what;                      // one line: --help and the README table (parameters as the front end names them)
  OptimizerOptions defaults;         // the official lr, betas, eps and weight decay
  Message other_defaults;            // its own options' defaults, in words (empty when none)
  std::vector<std::string> configs;  // config kinds it accepts ("adam_mini", "blockwise_lr", "sgd_sai")
  bool needs_partition = false;      // takes the Adam-mini partition: adam_mini.json, else the official rules
  Factory make;
  std::string couples_tensors;  // what ties all tensors in one update ("": state per tensor, ZeRO-1 shards it)
  // Steps CPU tensors only (the fused CPU loop; cuda/fused_kernels.cu is compiled but not dispatched):
  // parameters on another device are refused in one line, not read through a host pointer.
  bool cpu_only = true;
};

const std::vector<OptimizerEntry>& optimizer_registry();
// The entry of `name`; an unknown name is refused with the list of known ones.
const OptimizerEntry& find_optimizer(const std::string& name);
// The registry as the README's Markdown table (name, what, configs, defaults), parameters spelled as the
// front end says (errors.h: set_parameter_names).
std::string optimizer_table_markdown();

}  // namespace bs
