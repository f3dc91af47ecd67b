// The blocksharp executable's start on transparent huge pages (src/huge_pages.h says why). glibc reads
// GLIBC_TUNABLES only when a process starts, so where the kernel gives huge pages only to advised
// memory ("madvise"), BLOCKSHARP_HUGE_PAGES is unset or 1 and GLIBC_TUNABLES names no
// glibc.malloc.hugetlb, a command that works on tensors (profile, structure, train, bench; not
// --help, config or launch, whose workers start the same way themselves) starts itself again with
// glibc.malloc.hugetlb=1 added. This runs from the executable's .preinit_array, before any library's
// initializers (LibTorch's take most of the start-up): the second start costs the dynamic loader's
// work once more (mapping and relocating ~290 libraries: 0.1-0.2 s on the Zen 5 VM), and the process
// keeps its id, arguments and descriptors. Written against the raw environment and system
// calls only (no allocation, no getenv: nothing of libc's is assumed initialized yet). Where anything
// is out of the ordinary (an environment too large, no /proc/self/exe), it does nothing.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

namespace {

constexpr char kTunables[] = "GLIBC_TUNABLES=";
constexpr char kHugetlb[] = "glibc.malloc.hugetlb=";
constexpr char kSwitch[] = "BLOCKSHARP_HUGE_PAGES=";

bool starts_with(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

// Whether the kernel's mode is madvise: "always [madvise] never".
bool kernel_mode_is_madvise() {
  const int fd = open("/sys/kernel/mm/transparent_hugepage/enabled", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char text[128] = {};
  const ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  return n > 0 && std::strstr(text, "[madvise]") != nullptr;
}

// Whether a GLIBC_TUNABLES value names glibc.malloc.hugetlb (as a whole item of its colon-separated list).
bool names_hugetlb(const char* value) {
  for (const char* item = value;; ++item) {  // item: the start of each entry, just past a colon
    if (starts_with(item, kHugetlb)) return true;
    item = std::strchr(item, ':');
    if (item == nullptr) return false;
  }
}

// Whether the command line asks for work on tensors: its subcommand (blocksharp's only option before
// one is --version) is one of them, and no --help comes with it.
bool works_on_tensors(int argc, char** argv) {
  if (argc < 2) return false;
  bool heavy = false;
  for (const char* command : {"profile", "structure", "train", "bench"})
    heavy = heavy || std::strcmp(argv[1], command) == 0;
  for (int i = 2; heavy && i < argc; ++i)
    heavy = std::strcmp(argv[i], "-h") != 0 && std::strcmp(argv[i], "--help") != 0 &&
            std::strcmp(argv[i], "--help-all") != 0;
  return heavy;
}

void start_on_huge_pages(int argc, char** argv, char** envp) {
  if (argv == nullptr || envp == nullptr || !works_on_tensors(argc, argv)) return;
  constexpr int kMaxVars = 4096;
  static char* env[kMaxVars + 2];
  static char tunables[8192];
  const char* old_tunables = nullptr;
  int n = 0;
  for (char** e = envp; *e != nullptr; ++e) {
    // BLOCKSHARP_HUGE_PAGES=0, or a bad value that main() names in its error line: leave the start alone.
    if (starts_with(*e, kSwitch) && std::strcmp(*e + std::strlen(kSwitch), "1") != 0) return;
    if (starts_with(*e, kTunables)) {
      old_tunables = *e + std::strlen(kTunables);
      if (names_hugetlb(old_tunables)) return;  // the user's choice (and the started-again process's)
      continue;
    }
    if (n == kMaxVars) return;
    env[n++] = *e;
  }
  if (!kernel_mode_is_madvise()) return;
  const size_t old_len = old_tunables ? std::strlen(old_tunables) : 0;
  if (std::strlen(kTunables) + old_len + 1 + std::strlen(kHugetlb) + 2 > sizeof tunables) return;
  std::strcpy(tunables, kTunables);
  if (old_tunables && old_len > 0) {
    std::strcat(tunables, old_tunables);
    std::strcat(tunables, ":");
  }
  std::strcat(tunables, kHugetlb);
  std::strcat(tunables, "1");
  env[n++] = tunables;
  env[n] = nullptr;
  execve("/proc/self/exe", argv, env);  // returns only where it failed: carry on as started
}

}  // namespace

// Run by the dynamic loader with (argc, argv, envp) before every initializer; only an executable's
// .preinit_array is honoured, so this file is linked into the executable itself, not a library.
__attribute__((section(".preinit_array"), used)) void (*blocksharp_start_on_huge_pages)(int, char**,
                                                                                        char**) = start_on_huge_pages;
