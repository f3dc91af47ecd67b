// Versioned JSON configs: every file carries "format": "blocksharp.<kind>/<version>", the model's
// parameter names and shapes, and the evidence behind its choices. Loading validates the file against
// the model with errors that name the file and the offending key.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "network.h"
#include "param_table.h"

namespace bs {

using json = nlohmann::json;

constexpr int kConfigVersion = 1;
std::string config_format(const std::string& kind);  // "blocksharp.<kind>/1"

// "format", tool version, command line and the model description (name, family, sizes).
json config_header(const std::string& kind, const ModelInfo& info);

// Parses `path` (any kind); a missing or malformed file is a UserError naming it, and so is a config
// written by profile whose output set beside it is incomplete or from another run (check_output_set).
json read_config_file(const std::string& path);
// Parses `path` and checks "format" is blocksharp.<kind>/1; any other kind or a malformed file is a
// UserError naming the file (and the key).
json read_config(const std::string& path, const std::string& kind);
// The kind a config file declares ("adam_mini", ...), for `config show`.
std::string config_kind(const json& j, const std::string& path);

// Each entry of j["params"] must name a model parameter with the model's shape, and (when
// `require_all`) every model parameter must appear.
void check_params(const json& j, const ParamTable& table, const std::string& path, bool require_all);

// Writes `j` to path.tmp then renames: a reader never sees half a file.
void write_json_atomic(const std::string& path, const json& j);

// Typed access with errors naming path and key.
const json& require_key(const json& j, const std::string& key, const std::string& where);

}  // namespace bs
