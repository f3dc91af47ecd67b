// /proc and cgroup readers behind memory.h.
#include "memory.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "errors.h"

namespace bs {

namespace {

int64_t proc_field_kib(const char* file, const std::string& key) {
  std::ifstream f(file);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) {
      std::istringstream ss(line.substr(key.size() + 1));
      int64_t kib = -1;
      ss >> kib;
      return kib;
    }
  return -1;
}

int64_t read_int(const char* path) {
  std::ifstream f(path);
  std::string s;
  if (!(f >> s) || s == "max") return -1;
  try {
    return std::stoll(s);
  } catch (const std::exception&) {
    return -1;
  }
}

// A size field of /proc/self/status (kB there) in bytes; -1 if unknown.
int64_t status_bytes(const std::string& key) {
  const int64_t kib = proc_field_kib("/proc/self/status", key);
  return kib < 0 ? -1 : kib * 1024;
}

}  // namespace

int64_t machine_available_bytes() {
  const int64_t kib = proc_field_kib("/proc/meminfo", "MemAvailable");
  int64_t avail = kib < 0 ? -1 : kib * 1024;
  const int64_t limit = read_int("/sys/fs/cgroup/memory.max"), used = read_int("/sys/fs/cgroup/memory.current");
  if (limit > 0 && used >= 0 && (avail < 0 || limit - used < avail)) avail = limit - used;
  return avail;
}

int64_t machine_total_bytes() {
  const int64_t kib = proc_field_kib("/proc/meminfo", "MemTotal");
  int64_t total = kib < 0 ? -1 : kib * 1024;
  const int64_t limit = read_int("/sys/fs/cgroup/memory.max");
  if (limit > 0 && (total < 0 || limit < total)) total = limit;
  return total;
}

int64_t env_bytes(const char* name, int64_t fallback, bool zero_allowed) {
  const char* v = std::getenv(name);
  if (!v) return fallback;
  char* end = nullptr;
  const long long bytes = std::strtoll(v, &end, 10);
  if (end == v || *end != '\0' || bytes < 0 || (bytes == 0 && !zero_allowed))
    throw UserError(std::string(name) + "='" + v + "': expected a " + (zero_allowed ? "" : "positive ") +
                    "number of bytes");
  return bytes;
}

int64_t available_memory_bytes() {
  int64_t avail = machine_available_bytes();
  // A user's cap (and the tests' way to play a small machine): BLOCKSHARP_MEMORY_BUDGET=bytes.
  const int64_t cap = env_bytes("BLOCKSHARP_MEMORY_BUDGET", -1, false);
  if (cap > 0 && (avail < 0 || cap < avail)) avail = cap;
  return avail;
}

int64_t peak_resident_bytes() { return status_bytes("VmHWM"); }

int64_t resident_bytes() { return status_bytes("VmRSS"); }

bool reset_peak_resident() {
  std::ofstream f("/proc/self/clear_refs");
  return static_cast<bool>(f << "5" << std::flush);
}

std::string format_bytes(double bytes) {
  char buf[32];
  if (bytes >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
  else if (bytes >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.0f MiB", bytes / (1024.0 * 1024));
  else
    std::snprintf(buf, sizeof buf, "%.0f KiB", bytes / 1024.0);
  return buf;
}

}  // namespace bs
