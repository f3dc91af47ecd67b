"""train --derive-at N (issue: derive inside the training run). Oracles:
(a) the two-process path it stands for: `train --stop-at N` (checkpoint at N), `profile --params
    <those parameters>` with --derive-at's profile options, `train --resume --config
    derived/blockwise_lr.json`: the same derived config and the same final parameters, bit for bit;
(b) kill -9 while the run derives or trains on, then --resume: the uninterrupted run's parameters and
    derived config, bit for bit (and a resume from a checkpoint before N derives again, identically);
(c) the multipliers differ from the paper's table, so the derivation is not a no-op.
Usage: test_derive_at.py BLOCKSHARP WORKDIR"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

blocksharp, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
small = ["--set", "n_layer=1", "--set", "dim=32", "--set", "n_heads=2", "--seq-len", "16", "--batch-size", "4",
         "--dtype", "float64"]
N, S = 6, 40
derive = ["--derive-batches", "2", "--derive-probes", "8"]
train = [blocksharp, "train", *small, "--steps", str(S), "--checkpoint-every", "3", "--eval-batches", "2",
         "--warmup", "2"]


def run(args):
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, " ".join(args) + "\n" + r.stderr
    return r.stdout


def params(d):
    with h5py.File(os.path.join(d, "final_params.h5")) as f:
        return {k: f[k][()] for k in f.keys()}


def multipliers(d):
    j = json.load(open(os.path.join(d, "blockwise_lr.json")))
    return {g["group"]: g["multiplier"] for g in j["groups"]}


A = os.path.join(work, "derive")
out = run(train + ["--derive-at", str(N), *derive, "--out", A])
assert f"derived at step {N}" in out, out
mA = multipliers(os.path.join(A, "derived"))
paper = {"Emb": 10, "QK": 8, "VO": 4, "FFN": 6, "Norm": 1, "Head": 1}
assert any(abs(m - paper.get(g, 1)) > 1e-9 for g, m in mA.items()), mA

# (a) the two-process path
B = os.path.join(work, "two_step")
run(train + ["--stop-at", str(N), "--out", B])
with h5py.File(os.path.join(B, "checkpoint.h5")) as f, h5py.File(os.path.join(work, "params_N.h5"), "w") as g:
    assert int(f["step"][()]) == N
    for k in f["params"].keys():
        g[k] = f["params"][k][()]
run([blocksharp, "profile", *small, "--params", os.path.join(work, "params_N.h5"), "--batches", "2", "--probes", "8",
     "--topk", "1", "--tol", "1e-4", "--density-runs", "0", "--block-eigs", "none", "--lr-policy", "inverse-sharpness",
     "--out", os.path.join(B, "derived")])
assert multipliers(os.path.join(B, "derived")) == mA
run(train + ["--resume", "--config", os.path.join(B, "derived", "blockwise_lr.json"), "--out", B])
pA, pB = params(A), params(B)
assert pA.keys() == pB.keys() and all(np.array_equal(pA[k], pB[k]) for k in pA), "two-process path differs"

# (b) kill -9 after the derived set appears (somewhere in the steps after N), then --resume
C = os.path.join(work, "killed")
p = subprocess.Popen(train + ["--derive-at", str(N), *derive, "--out", C], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
manifest = os.path.join(C, "derived", "blockwise_lr.json")
deadline = time.time() + 300
while time.time() < deadline and not os.path.exists(manifest) and p.poll() is None:
    time.sleep(0.01)
alive = p.poll() is None
os.kill(p.pid, signal.SIGKILL)
assert p.wait() == -signal.SIGKILL and alive, "the run ended before the kill: nothing was tested"
run(train + ["--derive-at", str(N), *derive, "--resume", "--out", C])
pC = params(C)
assert all(np.array_equal(pA[k], pC[k]) for k in pA), "killed and resumed run differs"
assert multipliers(os.path.join(C, "derived")) == mA

# a resume from a checkpoint before N (step 3) derives again, identically
D = os.path.join(work, "early")
run(train + ["--derive-at", str(N), *derive, "--stop-at", "3", "--out", D])
assert not os.path.exists(os.path.join(D, "derived"))
run(train + ["--derive-at", str(N), *derive, "--resume", "--out", D])
pD = params(D)
assert all(np.array_equal(pA[k], pD[k]) for k in pA), "resume before N differs"

# refused in one line before any work
r = subprocess.run(train + ["--derive-at", str(S), "--out", os.path.join(work, "bad")], capture_output=True, text=True)
assert r.returncode != 0 and "--derive-at" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
print("derive-at: two-process path, kill -9 resume and early resume all bit-identical; multipliers", mA)
