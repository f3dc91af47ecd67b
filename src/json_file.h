// Reading a JSON file with errors that name it: the one reader behind configs and Hugging Face
// config.json / index files.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace bs {

// The parsed file; UserError "<what> '<path>': file not found or not readable" or "...: malformed JSON
// at byte N".
nlohmann::json read_json_file(const std::string& path, const std::string& what);

}  // namespace bs
