"""Runs too large for memory: refused up front where the sizes say so, stopped with one line where
they do not (src/memory_guard.h), never left to the kernel's OOM killer. Oracles: the activation
floor the up-front refusal uses (model_zoo.h's activation_floor) is below what training measurably
holds per row of a batch (peak resident size of fresh processes at two batch sizes), and not
vacuously below it; a run past the reserve ends with exit 1, one error line, and the output a
previous run wrote in the same folder bit for bit as it was."""
import os
import re
import subprocess
import sys

blocksharp, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
P = lambda *p: os.path.join(work, *p)  # noqa: E731
env = {k: v for k, v in os.environ.items() if k not in ("BLOCKSHARP_MEMORY_BUDGET", "BLOCKSHARP_MEMORY_RESERVE")}


def peak_kib(cmd, **extra):
    """Peak resident size (KiB) of a fresh process running cmd, which must succeed."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(env, **extra))
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, (cmd, err)
    return usage.ru_maxrss


UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def floor_bytes(model, batch):
    """The activation floor the up-front check computes, read from its refusal under a 1-byte budget."""
    r = subprocess.run([blocksharp, "train", "--model", model, "--batch-size", str(batch), "--out", P("refused")],
                       capture_output=True, text=True, env=dict(env, BLOCKSHARP_MEMORY_BUDGET="1"))
    m = re.search(r"and ([0-9.]+) (KiB|MiB|GiB) of activations\)", r.stderr)
    assert r.returncode == 1 and m, r.stderr
    return float(m.group(1)) * UNITS[m.group(2)]


# 1. The floor per row of a batch against the measured growth per row (64 tokens a row).
for model in ("gpt2-tiny", "llama-tiny"):
    run = lambda b: [blocksharp, "train", "--model", model, "--steps", "1", "--batch-size", str(b),  # noqa: E731
                     "--out", P("grow_" + model)]
    measured = (peak_kib(run(512)) - peak_kib(run(128))) * 1024 / 384
    floor = (floor_bytes(model, 4096) - floor_bytes(model, 1024)) / 3072
    print(f"{model}: activation floor {floor / 1024:.1f} KiB per row, training holds {measured / 1024:.1f} KiB more "
          f"per row ({measured / floor:.2f}x)")
    assert floor <= measured, (model, floor, measured)
    assert floor >= measured / 5, (model, floor, measured)

# 2. A gross batch size is refused before the model is built, naming --batch-size.
r = subprocess.run([blocksharp, "train", "--batch-size", "100000000", "--out", P("gross")], capture_output=True,
                   text=True, env=env, timeout=60)
lines = r.stderr.strip().splitlines()
assert r.returncode == 1 and len(lines) == 1 and "--batch-size 100000000 of 64 tokens needs at least" in lines[0], \
    r.stderr
assert not os.path.exists(P("gross")), "a refused run left its --out"
print("refused up front:", lines[0])


# 3. Past the reserve: a run whose floor fits but whose steps do not (set the reserve 300 MB under what
# is free now, then train with a batch that holds ~3 GB) ends with one line and exit 1, and the output
# of an earlier run in the same folder is untouched.
def free_bytes():
    with open("/proc/meminfo") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))


out = P("kept")
small = [blocksharp, "train", "--steps", "2", "--out", out]
assert subprocess.run(small, capture_output=True, env=env).returncode == 0
before = {n: open(os.path.join(out, n), "rb").read() for n in ("final_params.h5", "train_summary.json")}
reserve = free_bytes() - 300 * (1 << 20)
r = subprocess.run([blocksharp, "train", "--steps", "2", "--batch-size", "3000", "--out", out], capture_output=True,
                   text=True, env=dict(env, BLOCKSHARP_MEMORY_RESERVE=str(reserve)), timeout=300)
lines = r.stderr.strip().splitlines()
assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stderr)
assert lines[0].startswith("blocksharp: error: out of memory: this run reached ") and \
    "(BLOCKSHARP_MEMORY_RESERVE); no output is left half-written" in lines[0], lines[0]
after = {n: open(os.path.join(out, n), "rb").read() for n in before}
assert after == before, "the earlier run's outputs changed"
assert not [f for f in os.listdir(out) if ".tmp." in f], os.listdir(out)
print("stopped past the reserve:", lines[0])

# 3b. profile holding several batches' graphs at once suggests holding one at a time first (and leaves no
# folder); with one batch it does not.
for batches, advice in ((3, True), (1, False)):
    reserve = free_bytes() - 300 * (1 << 20)
    r = subprocess.run([blocksharp, "profile", "--batches", str(batches), "--batch-size", str(600 // batches),
                        "--topk", "1", "--probes", "3", "--density-runs", "0", "--noise-batches", "0", "--block-eigs",
                        "none", "--out", P(f"graphs{batches}")], capture_output=True, text=True,
                       env=dict(env, BLOCKSHARP_MEMORY_RESERVE=str(reserve)), timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("blocksharp: error: out of memory"), r.stderr
    said = f"(try --recompute-graphs, which holds one of the {batches} batches' graphs at a time instead of all; " \
        "or a smaller --batch-size"
    assert (said in lines[0]) == advice and ("(try a smaller --batch-size" in lines[0]) == (not advice), lines[0]
    assert not os.path.exists(P(f"graphs{batches}")), os.listdir(work)
    print(f"profile --batches {batches} stopped:", lines[0])

# 4. A malformed reserve is one line before any work.
r = subprocess.run(small[:-1] + [P("bad_reserve")], capture_output=True, text=True,
                   env=dict(env, BLOCKSHARP_MEMORY_RESERVE="lots"))
assert r.returncode == 1 and r.stderr.strip() == \
    "blocksharp: error: BLOCKSHARP_MEMORY_RESERVE='lots': expected a number of bytes", r.stderr
print("all memory-guard checks passed")
