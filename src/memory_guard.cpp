// The free-memory watch of memory_guard.h: one detached thread, a read of /proc/meminfo (and the
// cgroup's counters) every 10 ms, which costs about 30 microseconds each.
#include "memory_guard.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "errors.h"
#include "memory.h"
#include "out_dir.h"
#include "progress.h"

namespace bs::memory_guard {

int64_t reserve_bytes() {
  const int64_t total = machine_total_bytes();
  return env_bytes("BLOCKSHARP_MEMORY_RESERVE", std::max<int64_t>(int64_t{256} << 20, total > 0 ? total / 50 : 0),
                   true);
}

void start(const Message& first_advice) {
  static std::once_flag once;
  const int64_t reserve = reserve_bytes();  // a malformed value is one line here, in the caller's thread
  const Message first = first_advice.empty() ? Message() : first_advice + "; or ";
  std::call_once(once, [reserve, first] {
    std::thread([reserve, first] {
      for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        const int64_t avail = machine_available_bytes();
        if (avail < 0 || avail >= reserve) continue;
        const Message said = "out of memory: this run reached " + format_bytes(static_cast<double>(resident_bytes())) +
                             " and the machine has " + format_bytes(static_cast<double>(avail)) +
                             " left, below the reserve of " + format_bytes(static_cast<double>(reserve)) +
                             " (BLOCKSHARP_MEMORY_RESERVE); no output is left half-written (try " + first +
                             "a smaller " + param("batch_size") + " or " + param("seq_len") + ", or a smaller model)";
        const std::string line =  // off the line a progress bar may be drawing (its destructor will not run)
            std::string(Progress::enabled() ? "\n" : "") + "blocksharp: error: " + spelled(said) + "\n";
        if (::write(STDERR_FILENO, line.data(), line.size()) < 0) {
          // nothing more to say where stderr is gone
        }
        remove_unused_out_dirs();
        std::_Exit(1);
      }
    }).detach();
  });
}

}  // namespace bs::memory_guard
