// huge_pages.h: the kernel's sysfs word, the environment, and /proc/self/smaps read back.
#include "huge_pages.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "errors.h"

namespace bs::huge_pages {

namespace {

// The value GLIBC_TUNABLES gives glibc.malloc.hugetlb ("" where it names none).
std::string hugetlb_tunable() {
  const char* env = std::getenv("GLIBC_TUNABLES");
  std::istringstream all(env ? env : "");
  std::string item, value;
  const std::string key = "glibc.malloc.hugetlb=";
  while (std::getline(all, item, ':'))
    if (item.rfind(key, 0) == 0) value = item.substr(key.size());
  return value;
}

// The sum over /proc/self/smaps' mappings of `field` (kB) where `take` says so of its VmFlags line.
template <class Take>
int64_t smaps_kib(const std::string& field, Take take) {
  std::ifstream f("/proc/self/smaps");
  if (!f) return -1;
  std::string line;
  int64_t total = 0, pending = 0;
  while (std::getline(f, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      std::istringstream ss(line.substr(field.size() + 1));
      ss >> pending;
    } else if (line.rfind("VmFlags:", 0) == 0) {
      if (take(line + " ")) total += pending;
      pending = 0;
    }
  }
  return total;
}

}  // namespace

std::string kernel_mode() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string word;
  while (f >> word)
    if (word.size() > 2 && word.front() == '[' && word.back() == ']') return word.substr(1, word.size() - 2);
  return "";
}

bool wanted() { return env_switch("BLOCKSHARP_HUGE_PAGES"); }

std::string describe() {
  const std::string mode = kernel_mode(), tunable = hugetlb_tunable();
  if (mode.empty()) return "off (the kernel has no transparent huge pages)";
  if (mode == "never") return "off (the kernel's mode is never)";
  if (mode == "always") return "on (the kernel's mode is always)";
  if (tunable == "1") return "on (glibc.malloc.hugetlb=1)";
  if (!tunable.empty()) return "as GLIBC_TUNABLES sets it (glibc.malloc.hugetlb=" + tunable + ")";
  if (!wanted()) return "off (BLOCKSHARP_HUGE_PAGES=0)";
  return "off (not started by the blocksharp executable)";
}

int64_t advised_bytes() {
  const int64_t kib =
      smaps_kib("Size", [](const std::string& flags) { return flags.find(" hg ") != std::string::npos; });
  return kib < 0 ? -1 : kib * 1024;
}

int64_t anon_huge_bytes() {
  const int64_t kib = smaps_kib("AnonHugePages", [](const std::string&) { return true; });
  return kib < 0 ? -1 : kib * 1024;
}

}  // namespace bs::huge_pages
