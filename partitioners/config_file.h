// Versioned JSON configs: every file carries "format": "blocksharp.<kind>/<version>", the model's
// parameter names and shapes, and the evidence behind its choices. Loading validates the file against
// the model with errors that name the file and the offending key.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>

#include "errors.h"

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

// j[key] as T (std::string, an integer, double): a missing key or a value of another JSON type is a
// UserError naming `where` and the key, never nlohmann's own exception.
template <class T>
T require_as(const json& j, const std::string& key, const std::string& where) {
  const json& v = require_key(j, key, where);
  const bool ok = std::is_same<T, std::string>::value ? v.is_string()
                  : std::is_integral<T>::value        ? v.is_number_integer()
                                                      : v.is_number();
  if (!ok) {
    const char* want = std::is_same<T, std::string>::value ? "a string"
                       : std::is_integral<T>::value        ? "an integer"
                                                           : "a number";
    throw UserError(where + ": key \"" + key + "\" must be " + want + ", not " + v.type_name());
  }
  return v.get<T>();
}

// Runs a config reader; a JSON type error it did not name itself (a value of an unexpected type deep
// in the file) becomes one UserError naming the file, so no reader lets nlohmann's exception escape.
template <class F>
auto with_config_errors(const std::string& path, F&& read) -> decltype(read()) {
  try {
    return read();
  } catch (const json::exception& e) {
    std::string what = e.what();
    const auto close = what.find("] ");
    if (close != std::string::npos) what = what.substr(close + 2);
    throw UserError("config '" + path + "': a value has the wrong JSON type (" + what + ")");
  }
}

}  // namespace bs
