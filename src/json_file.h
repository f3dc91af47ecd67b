// Reading a JSON file with errors that name it (the one reader behind configs and Hugging Face
// config.json / index files), and the one atomic text write (a temporary name unique to the process,
// synced and renamed into place by atomic_file.h; removed on failure) behind every JSON output.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "errors.h"
#include "atomic_file.h"

namespace bs {

// The parsed file; UserError "<what> '<path>': file not found or not readable" or "...: malformed JSON
// at byte N".
nlohmann::json read_json_file(const std::string& path, const Message& what);

// Writes `text` to `path` through `path.tmp.<pid>`; UserError naming `path` on any failure.
void write_text_atomic(const std::string& path, const std::string& text);
// Writes `text` to `file`; on failure removes it and throws UserError naming `path` (the file's
// final name).
void write_text_file(const std::string& file, const std::string& text, const std::string& path);

}  // namespace bs
