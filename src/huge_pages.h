// Large CPU tensors on transparent huge pages: what this process runs with, for the reports and the
// checks. The optimizer steps and elementwise kernels stream arrays of hundreds of MB; on 4 KB pages
// each takes a page walk every 4 KB, which in a virtual machine (nested page tables) costs memory
// accesses of its own. LibTorch 1.13 allocates CPU tensors with glibc's malloc and has no huge-page
// option (PyTorch 2.x added THP_MEM_ALLOC_ENABLE for this), so where the kernel gives huge pages only
// to memory advised MADV_HUGEPAGE, the blocksharp executable starts itself with glibc's own switch,
// GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (tools/huge_pages_exec.cpp), unless BLOCKSHARP_HUGE_PAGES=0
// or GLIBC_TUNABLES already names glibc.malloc.hugetlb. It changes where memory lies, never a value.
#pragma once
#include <cstdint>
#include <string>

namespace bs::huge_pages {

// The kernel's mode: the bracketed word of /sys/kernel/mm/transparent_hugepage/enabled ("always",
// "madvise", "never"), "" where the file is missing.
std::string kernel_mode();
// BLOCKSHARP_HUGE_PAGES: unset or 1 true, 0 false, anything else a UserError naming it.
bool wanted();
// What this process runs with, one phrase for reports: "on (glibc.malloc.hugetlb=1)", "on (the
// kernel's mode is always)", or "off (...)" with the reason.
std::string describe();
// Bytes of this process's mappings advised MADV_HUGEPAGE (VmFlags "hg" in /proc/self/smaps) and of its
// anonymous memory on huge pages (AnonHugePages); -1 where unknown.
int64_t advised_bytes();
int64_t anon_huge_bytes();

}  // namespace bs::huge_pages
