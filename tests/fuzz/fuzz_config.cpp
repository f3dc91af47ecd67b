// libFuzzer harness: the config loader (JSON parse, format/version, then each kind's reader checked
// against a model's parameter table, as `train --config` and `config check` do).
#include "adam_mini_partition.h"
#include "blockwise_lr.h"
#include "config_file.h"
#include "errors.h"
#include "fuzz_common.h"
#include "sgd_sai_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bs::ParamTable table(bs::fuzz::tiny_model().named_parameters());
  const std::string path = bs::fuzz::input_file(data, size, ".json");
  try {
    const bs::json j = bs::read_config_file(path);
    const std::string kind = bs::config_kind(j, path);
    bs::check_params(j, table, path, false);
    if (kind == "adam_mini") bs::adam_mini_from_json(j, table, path);
    if (kind == "blockwise_lr") bs::blockwise_lr_from_json(j, table, path);
    if (kind == "sgd_sai") bs::sgd_sai_from_json(j, table, path);
  } catch (const bs::UserError&) {}
  return 0;
}
