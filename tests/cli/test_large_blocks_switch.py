"""BLOCKSHARP_LARGE_BLOCKS, the switch of the CLI's cache of freed tensors of 32 MB and more
(src/large_blocks.h). Oracles: what the benchmark reports follows the switch; a training run whose
logits and their gradient are 64 MB blocks writes the same bits with the cache and without (the cache
changes where memory lies, never a value); a bad value is one line naming the variable."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np

blocksharp, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
clean = {k: v for k, v in os.environ.items() if k != "BLOCKSHARP_LARGE_BLOCKS"}


def bench(**env):
    r = subprocess.run([blocksharp, "bench", "optim", "--threads", "1", "--layers", "1", "--dim", "64", "--vocab",
                        "256", "--min-time", "0.01", "--paired-steps", "1", "--rounds", "1"],
                       capture_output=True, text=True, env=dict(clean, **env))
    assert r.returncode == 0, (env, r.stderr)
    return json.loads(r.stdout)["large_block_cache"]


said = bench()
assert said.startswith("on (blocks of 32 MB and more, up to ") and said.endswith(" MB kept)"), said
assert bench(BLOCKSHARP_LARGE_BLOCKS="1") == said
assert bench(BLOCKSHARP_LARGE_BLOCKS="0") == "off (BLOCKSHARP_LARGE_BLOCKS=0)"
print(f"bench optim reports '{said}' by default, off with BLOCKSHARP_LARGE_BLOCKS=0")


# Logits of 8 x 32 tokens over a 65,536-word vocabulary: 64 MB, as is their gradient, every step.
def train(d, **env):
    r = subprocess.run([blocksharp, "train", "--model", "gpt2-tiny", "--set", "n_layer=1", "--set", "vocab=65536",
                        "--steps", "6", "--batch-size", "8", "--seq-len", "32", "--threads", "1", "--trace-every",
                        "3", "--trace-probes", "2", "--eval-batches", "1", "--out", os.path.join(work, d)],
                       capture_output=True, text=True, env=dict(clean, **env))
    assert r.returncode == 0, (env, r.stderr)
    out = {}
    for prefix, name in (("params/", "final_params.h5"), ("trace/", "trace.h5")):
        with h5py.File(os.path.join(work, d, name)) as f:
            f.visititems(lambda k, v: out.__setitem__(prefix + k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return out


on, off = train("on"), train("off", BLOCKSHARP_LARGE_BLOCKS="0")
assert on.keys() == off.keys() and len(on) > 5, (sorted(on), sorted(off))
diff = [k for k in on if not np.array_equal(np.asarray(on[k]), np.asarray(off[k]))]
assert not diff, diff
print(f"train: {len(on)} datasets bit-identical with the cache and without")

# A bad switch: one line naming it, before any work.
r = subprocess.run([blocksharp, "bench", "optim", "--threads", "1"], capture_output=True, text=True,
                   env=dict(clean, BLOCKSHARP_LARGE_BLOCKS="yes"))
assert r.returncode == 1 and r.stderr == "blocksharp: error: BLOCKSHARP_LARGE_BLOCKS: expected 0 or 1, got 'yes'\n", (
    r.returncode, r.stderr)
print("BLOCKSHARP_LARGE_BLOCKS=yes: one line naming it")
