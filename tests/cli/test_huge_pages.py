"""The blocksharp executable on transparent huge pages (src/huge_pages.h, tools/huge_pages_exec.cpp).
Oracles: the kernel's own mode (/sys/kernel/mm/transparent_hugepage/enabled) says what the process
must run with; the kernel's view of the process (/proc/self/smaps' "hg" flag, which `bench optim`
reports) says whether glibc advised its memory; a training run with and without huge pages writes the
same bits (parameters and sharpness trace)."""
import json
import os
import subprocess
import sys

from switch_runs import assert_bad_switch_named, assert_same_bits, train_datasets

blocksharp, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)

mode = ""
try:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        mode = next((w[1:-1] for w in f.read().split() if w.startswith("[") and w.endswith("]")), "")
except OSError:
    pass
clean = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "BLOCKSHARP_HUGE_PAGES")}


def bench(**env):
    r = subprocess.run([blocksharp, "bench", "optim", "--threads", "1", "--layers", "1", "--dim", "64", "--vocab",
                        "256", "--min-time", "0.01", "--paired-steps", "1", "--rounds", "1"],
                       capture_output=True, text=True, env=dict(clean, **env))
    assert r.returncode == 0, (env, r.stderr)
    out = json.loads(r.stdout)
    return out["huge_pages"], out["glibc_tunables"], out["runs"][0]["huge_page_advised_bytes"]


said, tunables, advised = bench()
default = said
if mode == "madvise":
    # Started again with glibc's switch: the heap and every large block advised (a 1-layer model's
    # optimizer state alone is ~1 MB per case; LibTorch's start-up heap is tens of MB).
    assert said == "on (glibc.malloc.hugetlb=1)" and tunables == "glibc.malloc.hugetlb=1", (said, tunables)
    assert advised >= 2 << 20, advised
    # Off by request: nothing advised, the environment as given.
    said, tunables, advised = bench(BLOCKSHARP_HUGE_PAGES="0")
    assert said == "off (BLOCKSHARP_HUGE_PAGES=0)" and tunables == "" and advised == 0, (said, tunables, advised)
    # The user's own tunables are kept, the switch added after them.
    said, tunables, advised = bench(GLIBC_TUNABLES="glibc.malloc.tcache_count=7")
    assert said == "on (glibc.malloc.hugetlb=1)", said
    assert tunables == "glibc.malloc.tcache_count=7:glibc.malloc.hugetlb=1" and advised >= 2 << 20, (tunables, advised)
    # A user who set glibc.malloc.hugetlb decides (first entry or a later one): not started again, nothing added.
    for given in ("glibc.malloc.hugetlb=0", "glibc.malloc.tcache_count=7:glibc.malloc.hugetlb=0"):
        said, tunables, advised = bench(GLIBC_TUNABLES=given)
        assert said == "as GLIBC_TUNABLES sets it (glibc.malloc.hugetlb=0)" and tunables == given, (said, tunables)
        assert advised == 0, (given, advised)
elif mode == "always":
    assert said == "on (the kernel's mode is always)" and tunables == "", (said, tunables)
else:
    assert said.startswith("off (the kernel") and tunables == "", (said, tunables, mode)
print(f"kernel mode {mode or 'none'}: bench optim reports '{default}' by default")


# The same bits either way: a short training run with a sharpness trace, on and off.
on = train_datasets(blocksharp, os.path.join(work, "on"), clean)
off = train_datasets(blocksharp, os.path.join(work, "off"), dict(clean, BLOCKSHARP_HUGE_PAGES="0"))
print(f"train: {assert_same_bits(on, off)} datasets bit-identical with huge pages and without")

# A bad switch: one line naming it, before any work (found by main(); the start-up hook leaves it).
assert_bad_switch_named(blocksharp, clean, "BLOCKSHARP_HUGE_PAGES", "yes")
print("BLOCKSHARP_HUGE_PAGES=yes: one line naming it")
