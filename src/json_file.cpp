// read_json_file.
#include "json_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "errors.h"

namespace bs {

nlohmann::json read_json_file(const std::string& path, const Message& what) {
  std::ifstream f(path);
  if (!f) throw UserError(what + " '" + path + "': file not found or not readable");
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw UserError(what + " '" + path + "': malformed JSON at byte " + std::to_string(e.byte));
  } catch (const nlohmann::json::out_of_range&) {  // e.g. a number beyond double's range (1e999)
    throw UserError(what + " '" + path + "': a number is out of range (beyond a double or a 64-bit integer)");
  } catch (const nlohmann::json::exception& e) {
    throw UserError(what + " '" + path + "': unreadable JSON (" + e.what() + ")");
  }
}

void write_text_file(const std::string& file, const std::string& text, const std::string& path) {
  bool ok;
  {
    std::ofstream f(file, std::ios::binary);
    f << text;
    f.flush();
    ok = static_cast<bool>(f);
  }
  if (!ok) {
    const int err = errno;
    std::remove(file.c_str());
    throw UserError("cannot write '" + path + "' (" + std::strerror(err ? err : EIO) + ")");
  }
}

void write_text_atomic(const std::string& path, const std::string& text) {
  write_atomically(path, [&](const std::string& tmp) { write_text_file(tmp, text, path); });
}

}  // namespace bs
