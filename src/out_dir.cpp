// Output folders: ensure_writable_dir and prepare_out_dir (out_dir.h).
#include "out_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <vector>

namespace bs {

namespace {

// Temporary files (NAME.tmp.PID, json_file.h's temp_name) that another process left in `dir`: with the
// folder's lock held, no live writer owns them, so they are debris of a killed run (kill -9, power
// loss) and would otherwise keep their disk space for ever.
void remove_stale_temps(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  const std::string mine = ".tmp." + std::to_string(getpid());
  std::vector<std::string> stale;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    const auto at = name.rfind(".tmp.");
    if (at == std::string::npos || at == 0 || name.size() == at + 5) continue;
    if (name.find_first_not_of("0123456789", at + 5) != std::string::npos) continue;
    if (name.compare(at, std::string::npos, mine) != 0) stale.push_back(dir + "/" + name);
  }
  closedir(d);
  for (const auto& p : stale) std::remove(p.c_str());
}

// Folders this process created (ensure_writable_dir), outermost first: remove_unused_out_dirs' list,
// which the memory guard's thread may read (memory_guard.h) while the main thread adds to it.
std::mutex created_mutex;
std::vector<std::string>& created_dirs() {
  static std::vector<std::string> dirs;
  return dirs;
}

}  // namespace

void ensure_writable_dir(const std::string& dir, const Message& option) {
  std::string partial;
  std::stringstream ss(dir);
  std::string part;
  if (!dir.empty() && dir[0] == '/') partial = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    partial += part + "/";
    if (mkdir(partial.c_str(), 0755) == 0) {
      const std::lock_guard<std::mutex> hold(created_mutex);
      created_dirs().push_back(partial);
    } else if (errno != EEXIST)
      throw UserError(option + " '" + dir + "': cannot create folder (" + std::strerror(errno) + ")");
  }
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw UserError(option + " '" + dir + "': not a folder");
  const std::string probe = dir + "/.blocksharp-write-test." + std::to_string(getpid());
  std::ofstream f(probe);
  f << "x";
  f.close();
  if (!f) {
    std::remove(probe.c_str());
    throw UserError(option + " '" + dir + "': folder is not writable");
  }
  std::remove(probe.c_str());
}

void prepare_out_dir(const std::string& dir) {
  ensure_writable_dir(dir, param("out"));
  // One writer per folder: an advisory lock held until the process ends (the kernel drops it even on
  // kill -9). Under torchrun / launch only rank 0 writes, so only it locks.
  const char* rank = std::getenv("RANK");
  if (rank && std::string(rank) != "0") return;
  // flock conflicts between two opens in one process too: a folder this process holds stays held.
  static std::set<std::string> held;
  char resolved[PATH_MAX];
  const std::string key = realpath(dir.c_str(), resolved) ? std::string(resolved) : dir;
  if (held.count(key)) return;
  const std::string lock = dir + "/.blocksharp.lock";
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    throw UserError(param("out") + " '" + dir + "': cannot create its lock file (" + std::strerror(errno) + ")");
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    char pid[32] = {0};
    const ssize_t got = ::pread(fd, pid, sizeof pid - 1, 0);
    ::close(fd);
    throw UserError(param("out") + " '" + dir + "' is in use by another blocksharp process" +
                    (got > 0 ? " (pid " + std::string(pid, static_cast<size_t>(got)) + ")" : std::string()) +
                    "; wait for it or choose another " + param("out"));
  }
  held.insert(key);
  const std::string me = std::to_string(getpid());
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, me.data(), me.size(), 0) < 0) {
    // the pid is only for the message above; the lock holds without it
  }
  remove_stale_temps(dir);
}

void remove_unused_out_dirs() {
  // Among data-parallel ranks the first mkdir wins, maybe not rank 0's, whose lock file is in the folder:
  // there a folder stays (the lock file would otherwise go while rank 0 holds it).
  if (const char* world = std::getenv("WORLD_SIZE"); world && std::atoi(world) > 1) return;
  const std::lock_guard<std::mutex> hold(created_mutex);
  auto& dirs = created_dirs();
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {  // innermost first
    DIR* d = opendir(it->c_str());
    if (!d) continue;
    bool only_lock = true;
    while (const dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != ".." && name != ".blocksharp.lock") only_lock = false;
    }
    closedir(d);
    if (!only_lock) break;  // something was written: this folder and those around it stay
    std::remove((*it + ".blocksharp.lock").c_str());
    if (rmdir(it->c_str()) != 0) break;
  }
  dirs.clear();
}

}  // namespace bs
