// atomic_file.h: temp names, sync-and-rename.
#include "atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "errors.h"

namespace bs {

std::string temp_name(const std::string& path) { return path + ".tmp." + std::to_string(getpid()); }

void publish(const std::string& tmp, const std::string& path) {
  errno = 0;
  bool ok = true;
  if (const int fd = ::open(tmp.c_str(), O_RDONLY); fd >= 0) {
    ok = ::fsync(fd) == 0;  // the data is on disk before the name points at it
    ::close(fd);
  } else {
    ok = false;
  }
  if (ok && std::rename(tmp.c_str(), path.c_str()) == 0) return;
  const int err = errno;
  std::remove(tmp.c_str());
  throw UserError("cannot write '" + path + "' (" + std::strerror(err ? err : EIO) + ")");
}

void write_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write) {
  const std::string tmp = temp_name(path);
  try {
    write(tmp);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  publish(tmp, path);
}

}  // namespace bs
