// A watch on the machine's free memory while a command runs: where the kernel's OOM killer would end
// the process mid-step (SIGKILL, no message, minutes of swapping first), the guard ends it with one
// error line first. Outputs are written whole or not at all (atomic_file.h), so stopping at any point
// leaves no output half-written (a killed write's temporary file is removed by the next run there).
#pragma once
#include <cstdint>

#include "errors.h"

namespace bs::memory_guard {

// The free memory below which the guard stops the run: BLOCKSHARP_MEMORY_RESERVE (bytes) when set
// (UserError when malformed), else 2 % of the machine's (or the cgroup's) memory, at least 256 MiB.
int64_t reserve_bytes();
// Starts the watch (a thread reading the free memory every 10 ms) once per process; the profile,
// structure and train commands call it before they build anything. `first_advice`, when given, is what
// the stop's line suggests first, before a smaller batch, sequence or model (profile: holding one
// batch's graph at a time where it holds several).
void start(const Message& first_advice = Message());

}  // namespace bs::memory_guard
