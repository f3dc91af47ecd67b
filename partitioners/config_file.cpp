// Config I/O and validation.
#include "config_file.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "distributed.h"
#include "errors.h"
#include "json_file.h"
#include "output_set.h"
#include "provenance.h"

namespace bs {

std::string config_format(const std::string& kind) {
  return "blocksharp." + kind + "/" + std::to_string(kConfigVersion);
}

json config_header(const std::string& kind, const ModelInfo& info) {
  json aliases = json::object();
  for (const auto& [a, of] : info.aliases) aliases[a] = of;
  json header = {{"format", config_format(kind)},
                 {"model",
                  {{"name", info.name},
                   {"family", info.family},
                   {"dim", info.dim},
                   {"n_heads", info.n_heads},
                   {"n_kv_heads", info.n_kv_heads},
                   {"n_layer", info.n_layer},
                   {"vocab", info.vocab},
                   {"tied", info.tied},
                   {"aliases", aliases},  // a shared tensor's later names -> the name it is listed under
                   {"frozen", info.frozen}}}};
  for (const auto& [key, value] : provenance()) header[key] = value;
  return header;
}

const json& require_key(const json& j, const std::string& key, const std::string& where) {
  if (!j.is_object() || !j.contains(key)) throw UserError(where + ": missing key \"" + key + "\"");
  return j.at(key);
}

json read_config_file(const std::string& path) {
  json j = read_json_file(path, "config");
  if (j.is_object() && j.contains("set_id") && j["set_id"].is_string())  // written by profile with others
    check_output_set(path, j["set_id"].get<std::string>());
  return j;
}

std::string config_kind(const json& j, const std::string& path) {
  const json& f = require_key(j, "format", "config '" + path + "'");
  if (!f.is_string()) throw UserError("config '" + path + "': key \"format\" must be a string");
  const std::string s = f.get<std::string>();
  const std::string prefix = "blocksharp.";
  const auto slash = s.rfind('/');
  if (s.rfind(prefix, 0) != 0 || slash == std::string::npos)
    throw UserError("config '" + path + "': key \"format\" is '" + s + "', not a blocksharp config");
  if (s.substr(slash + 1) != std::to_string(kConfigVersion))
    throw UserError("config '" + path + "': key \"format\" has version '" + s.substr(slash + 1) +
                    "'; this blocksharp reads version " + std::to_string(kConfigVersion));
  return s.substr(prefix.size(), slash - prefix.size());
}

json read_config(const std::string& path, const std::string& kind) {
  json j = read_config_file(path);
  const std::string got = config_kind(j, path);
  if (got != kind)
    throw UserError("config '" + path + "': key \"format\" says a " + got + " config, but a " + kind +
                    " config is needed here");
  return j;
}

void check_params(const json& j, const ParamTable& table, const std::string& path, bool require_all) {
  const std::string where = "config '" + path + "'";
  const json& params = require_key(j, "params", where);
  if (!params.is_array()) throw UserError(where + ": key \"params\" must be an array");
  std::vector<bool> seen(table.size(), false);
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string at = where + ": params[" + std::to_string(i) + "]";
    const json& name = require_key(params[i], "name", at);
    if (!name.is_string()) throw UserError(at + ".name must be a string");
    size_t idx;
    try {
      idx = table.index_of(name.get<std::string>());
    } catch (const UserError&) {
      throw UserError(at + ".name: parameter '" + name.get<std::string>() +
                      "' is not in the model (a config for another model?)");
    }
    if (params[i].contains("shape")) {
      std::vector<int64_t> shape;
      try {
        shape = params[i]["shape"].get<std::vector<int64_t>>();
      } catch (const json::exception&) {
        throw UserError(at + ".shape must be a list of integers");
      }
      if (shape != table.at(idx).shape) {
        std::ostringstream s;
        s << at << ".shape: parameter '" << table.at(idx).name << "' has shape "
          << c10::IntArrayRef(table.at(idx).shape) << " in the model but " << c10::IntArrayRef(shape)
          << " in the config";
        throw UserError(s.str());
      }
    }
    seen[idx] = true;
  }
  if (require_all)
    for (size_t i = 0; i < table.size(); ++i)
      if (!seen[i]) throw UserError(where + ": key \"params\" lacks model parameter '" + table.at(i).name + "'");
}

void write_json_atomic(const std::string& path, const json& j) {
  if (!dist::is_main()) return;  // only rank 0 writes files
  write_text_atomic(path, j.dump(2) + "\n");
}

}  // namespace bs
