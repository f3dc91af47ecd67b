"""SIGINT and SIGTERM during `train`: the run stops at the next step boundary, writes a checkpoint,
says "interrupted at step N; continue with --resume" and exits 130 / 143; `--resume` then ends with
parameters bit-identical to an uninterrupted run's (the oracle). Usage: test_signals.py BLOCKSHARP WORKDIR"""
import os
import re
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

blocksharp, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
STEPS = "4000"
common = [blocksharp, "train", "--set", "n_layer=1", "--set", "dim=32", "--set", "n_heads=2", "--seq-len", "16",
          "--batch-size", "4", "--steps", STEPS, "--schedule", "cosine", "--warmup", "10", "--eval-batches", "1",
          "--threads", "1"]
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def params(path):
    with h5py.File(path) as f:
        return {k: f[k][()] for k in f.keys()}


ref_dir = os.path.join(work, "uninterrupted")
subprocess.run(common + ["--out", ref_dir], capture_output=True, check=True)
ref = params(os.path.join(ref_dir, "final_params.h5"))

for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
    out = os.path.join(work, sig.name)
    p = subprocess.Popen(common + ["--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.0)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=120)
    m = re.search(r"interrupted at step (\d+); continue with --resume", stdout)
    check(p.returncode == code and m is not None, f"{sig.name}: exit {p.returncode} (want {code}), said: {stdout.strip()[-80:]}")
    if not m:
        continue
    with h5py.File(os.path.join(out, "checkpoint.h5")) as f:
        check(int(f["step"][()]) == int(m.group(1)), f"{sig.name}: checkpoint at the step it names ({m.group(1)})")
    r = subprocess.run(common + ["--resume", "--out", out], capture_output=True, text=True)
    check(r.returncode == 0, f"{sig.name}: --resume finishes ({r.stderr.strip()[:200]})")
    got = params(os.path.join(out, "final_params.h5"))
    same = got.keys() == ref.keys() and all(np.array_equal(got[k], ref[k]) for k in ref)
    check(same, f"{sig.name}: interrupted + resumed ends bit-identical to the uninterrupted run")

print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
sys.exit(1 if failures else 0)
