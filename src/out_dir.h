// Output folders: created if needed and proven writable before any work, and held by one writer.
#pragma once
#include <string>

#include "errors.h"

namespace bs {

// Creates `dir` if needed and proves it writable; the UserError names `option` (e.g. param("export_hf")).
void ensure_writable_dir(const std::string& dir, const Message& option);
// ensure_writable_dir naming parameter out, then the folder's advisory lock (one writer per folder, held
// until the process ends), then removes temporary files left there by killed runs.
void prepare_out_dir(const std::string& dir);
// After an error: removes the folders ensure_writable_dir created in this process that hold nothing
// but the lock (innermost first), so that a refused run leaves no empty --out behind. A folder with
// anything else in it stays, and with it the folders around it. Nothing is removed in a data-parallel
// run (WORLD_SIZE > 1), whose ranks share the folders.
void remove_unused_out_dirs();

}  // namespace bs
