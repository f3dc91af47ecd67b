// The one atomic file write behind every output (JSON, HDF5, safetensors, trace.h5, output sets): the
// file is written under a temporary name next to its final one, synced to disk, and renamed over the
// final name only when complete, so a reader sees the old file or the new one, never half of one.
#pragma once
#include <functional>
#include <string>

namespace bs {

// A temporary name next to `path`, unique to this process ("<path>.tmp.<pid>").
std::string temp_name(const std::string& path);

// Syncs `tmp` and renames it over `path`; on failure removes `tmp` and throws UserError naming `path`.
void publish(const std::string& tmp, const std::string& path);

// `write(tmp)` writes the file under temp_name(path); then publish. A throw from `write` removes the
// temporary file and propagates.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write);

}  // namespace bs
