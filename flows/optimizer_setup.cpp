// optimizer_setup: one reading of the configs for the training loop and the Python module.
#include "optimizer_setup.h"

#include <algorithm>

#include "adam_mini_partition.h"
#include "errors.h"
#include "registry.h"
#include "sgd_sai_config.h"

namespace bs {

OptimizerSetup optimizer_setup(const std::string& optimizer, const NamedTensors& params, const ModelInfo& info,
                               const std::vector<ConfigSource>& configs) {
  const ParamTable table(params);
  const OptimizerEntry& entry = find_optimizer(optimizer);
  OptimizerSetup c;
  for (const auto& [name, t] : params) {
    c.inputs.names.push_back(name);
    c.inputs.params.push_back(t);
  }
  bool have_partition = false;
  for (const auto& src : configs) {
    const std::string& path = src.where;
    const json j = src.value ? *src.value : read_config_file(path);
    const std::string kind = config_kind(j, path);
    const auto& ok = entry.configs;
    if (std::find(ok.begin(), ok.end(), kind) == ok.end()) {
      std::string list;
      for (const auto& k : ok) list += (list.empty() ? "" : " or ") + k;
      throw UserError("config '" + path + "': key \"format\" says a " + kind + " config; " + param("optimizer") + " " +
                      optimizer + " takes " + (list.empty() ? "no config" : list));
    }
    if (kind == "blockwise_lr") {
      if (c.blockwise) throw UserError(param("config") + ": only one blockwise_lr.json may be given");
      c.blockwise = blockwise_lr_from_json(j, table, path);
      c.blockwise_where = path;
    } else if (kind == "adam_mini") {
      c.inputs.partition = adam_mini_from_json(j, table, path);
      have_partition = true;
    } else if (kind == "sgd_sai") {
      c.inputs.gsnr = sgd_sai_from_json(j, table, path);
    }
  }
  if (entry.needs_partition && !have_partition) c.inputs.partition = adam_mini_rules(table, info);
  return c;
}

}  // namespace bs
