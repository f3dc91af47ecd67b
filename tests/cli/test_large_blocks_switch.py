"""BLOCKSHARP_LARGE_BLOCKS, the switch of the CLI's cache of freed tensors of 32 MB and more
(src/large_blocks.h). Oracles: what the benchmark reports follows the switch; a training run whose
logits and their gradient are 32 MB blocks writes the same bits with the cache and without (the cache
changes where memory lies, never a value); a bad value is one line naming the variable."""
import json
import os
import subprocess
import sys

from switch_runs import assert_bad_switch_named, assert_same_bits, train_datasets

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


# Logits of 2 x 32 tokens over a 131,072-word vocabulary: 32 MB, as is their gradient, every step.
big = ["--set", "vocab=131072"]
on = train_datasets(blocksharp, os.path.join(work, "on"), clean, big)
off = train_datasets(blocksharp, os.path.join(work, "off"), dict(clean, BLOCKSHARP_LARGE_BLOCKS="0"), big)
print(f"train: {assert_same_bits(on, off)} datasets bit-identical with the cache and without")

# A bad switch: one line naming it, before any work.
assert_bad_switch_named(blocksharp, clean, "BLOCKSHARP_LARGE_BLOCKS", "yes")
print("BLOCKSHARP_LARGE_BLOCKS=yes: one line naming it")
