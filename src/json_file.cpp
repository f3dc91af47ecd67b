// read_json_file.
#include "json_file.h"

#include <fstream>
#include <sstream>

#include "errors.h"

namespace bs {

nlohmann::json read_json_file(const std::string& path, const std::string& what) {
  std::ifstream f(path);
  if (!f) throw UserError(what + " '" + path + "': file not found or not readable");
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw UserError(what + " '" + path + "': malformed JSON at byte " + std::to_string(e.byte));
  }
}

}  // namespace bs
