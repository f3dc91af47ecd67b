// Memory facts for planning work before it starts: what the machine (or its cgroup) still has, and
// this process's peak resident size. A run that cannot fit is refused up front with the estimate,
// not killed by the kernel halfway.
#pragma once
#include <cstdint>
#include <string>

namespace bs {

// MemAvailable from /proc/meminfo, lowered to the cgroup's remaining limit when one is set and to
// BLOCKSHARP_MEMORY_BUDGET (bytes) when given; -1 if unknown.
int64_t available_memory_bytes();
// A byte count from the environment variable `name`: `fallback` when unset, else its value, which must be
// a whole number, positive (or, with zero_allowed, non-negative); a UserError naming the variable else.
int64_t env_bytes(const char* name, int64_t fallback, bool zero_allowed);
// The same without BLOCKSHARP_MEMORY_BUDGET: what the machine (or the cgroup) has free now; -1 if unknown.
int64_t machine_available_bytes();
// MemTotal, lowered to the cgroup's limit when one is set; -1 if unknown.
int64_t machine_total_bytes();
// Peak resident set size of this process (VmHWM); -1 if unknown.
int64_t peak_resident_bytes();
// Resident set size now (VmRSS); -1 if unknown.
int64_t resident_bytes();
// Sets the peak (VmHWM) back to the resident size now (Linux's clear_refs 5), so that a benchmark
// reads the peak of one phase; false where the kernel refuses.
bool reset_peak_resident();
// "12.3 GiB"
std::string format_bytes(double bytes);

}  // namespace bs
