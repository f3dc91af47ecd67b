"""Data parallelism on c10d (Gloo, 2 ranks on loopback). Oracle: the single-process run on the same
global batch, in float64.
- profile: eigenvalues, traces, block traces, kind lambda_max, density and g-SNR equal to 1e-10 relative;
- train, every optimizer (and with --zero1 where it applies): final parameters equal to 1e-10 relative
  to the model's largest entry, parameters identical on both ranks after every step (the run checks),
  a traced run's trace.h5 equal; ZeRO-1 state bytes per rank about 1/2 and a ZeRO-1 checkpoint resumed;
- faults: a rank that never joins or dies makes the other exit non-zero with one line within the timeout;
- bad input: batch not divisible by the ranks, RANK missing, --zero1 without ranks, nccl, coupled optimizers.
Usage: test_distributed.py BLOCKSHARP WORKDIR"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import h5py
import numpy as np

bs, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
TINY = ["--model", "gpt2-tiny", "--set", "n_layer=1", "--seq-len", "16", "--dtype", "float64", "--batch-size", "4"]


def run(args, **kw):
    r = subprocess.run([bs] + args, capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"{args}: {r.stderr}"
    return r


def launch(args):
    return run(["launch", "-n", "2", "--"] + args)


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


# profile: same numbers on the union of the shards.
prof = TINY + ["--batches", "2", "--topk", "3", "--probes", "4", "--density-runs", "2", "--block-eigs", "kinds"]
run(["profile"] + prof + ["--out", f"{work}/p1"])
launch(["profile"] + prof + ["--out", f"{work}/p2"])
with h5py.File(f"{work}/p1/profile.h5") as a, h5py.File(f"{work}/p2/profile.h5") as b:
    for key in ["global/eigenvalues", "global/trace", "blocks/trace", "kinds/lambda_max", "density/values",
                "blocks/gsnr", "global/loss"]:
        assert rel(a[key][()], b[key][()]) <= 1e-10, (key, rel(a[key][()], b[key][()]))
    assert a["global/n_hvp"][()] == b["global/n_hvp"][()]
for cfg in ["adam_mini.json", "blockwise_lr.json", "sgd_sai.json"]:
    assert os.path.exists(f"{work}/p2/{cfg}"), cfg
print("profile: 2 ranks == 1 process")


def params(path):
    with h5py.File(path) as f:
        return {k: f[k][()] for k in f.keys()}


def same_params(a, b):
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    scale = max(np.max(np.abs(v)) for v in pa.values())
    worst = max(np.max(np.abs(pa[k] - pb[k])) for k in pa) / scale
    return worst


train = TINY + ["--steps", "4", "--eval-batches", "2", "--warmup", "1"]
optimizers = ["adamw", "adam-mini", "sgd-sai", "apollo", "apollo-mini", "galore", "frugal", "adapm", "sgd-clip",
              "adam-clip", "torch-adamw"]
sharded = ["adamw", "adam-mini", "sgd-sai", "apollo", "apollo-mini", "galore", "adapm", "torch-adamw"]
for opt in optimizers:
    extra = ["--optimizer", opt] + (["--rank", "4", "--update-proj-gap", "2"] if opt in ("apollo", "galore", "adapm") else [])
    run(["train"] + train + extra + ["--out", f"{work}/t1-{opt}"])
    launch(["train"] + train + extra + ["--out", f"{work}/t2-{opt}"])
    worst = same_params(f"{work}/t1-{opt}/final_params.h5", f"{work}/t2-{opt}/final_params.h5")
    assert worst <= 1e-10, (opt, worst)
    line = f"train {opt}: 2 ranks == 1 process ({worst:.1e})"
    if opt in sharded:
        launch(["train"] + train + extra + ["--zero1", "--out", f"{work}/tz-{opt}"])
        worst = same_params(f"{work}/t1-{opt}/final_params.h5", f"{work}/tz-{opt}/final_params.h5")
        assert worst <= 1e-10, (opt, "zero1", worst)
        full = json.load(open(f"{work}/t1-{opt}/train_summary.json"))["optimizer_state_bytes"]
        per = json.load(open(f"{work}/tz-{opt}/train_summary.json"))["optimizer_state_bytes_per_rank"]
        assert sum(per) == full, (opt, per, full)
        # Tensors are balanced by size; state proportional to size (AdamW-like) splits about evenly.
        if opt in ("adamw", "adam-mini", "sgd-sai", "torch-adamw"):
            assert max(per) <= 0.55 * full, (opt, per, full)
        line += f", zero1 too (state per rank {per} of {full})"
    print(line)

# Blockwise LR + Adam-mini configs and the tracer, data parallel.
cfg = ["--config", f"{work}/p1/adam_mini.json", "--config", f"{work}/p1/blockwise_lr.json"]
traced = train + ["--optimizer", "adam-mini", "--trace-every", "2", "--trace-probes", "3", "--trace-batch-size", "2"] + cfg
run(["train"] + traced + ["--out", f"{work}/tr1"])
launch(["train"] + traced + ["--out", f"{work}/tr2"])
assert same_params(f"{work}/tr1/final_params.h5", f"{work}/tr2/final_params.h5") <= 1e-10
with h5py.File(f"{work}/tr1/trace.h5") as a, h5py.File(f"{work}/tr2/trace.h5") as b:
    assert list(a["step"][()]) == list(b["step"][()]) == [2, 4]
    for key in ["sharpness/lambda_max", "sharpness/directional", "grad_norm"]:
        assert rel(a[key][()], b[key][()]) <= 1e-8, (key, a[key][()], b[key][()])
print("train with configs + tracer: 2 ranks == 1 process")

# ZeRO-1 checkpoint: stop at step 2, resume, end equal to the uninterrupted run.
ck = train + ["--optimizer", "adamw", "--zero1", "--checkpoint-every", "2"]
launch(["train"] + ck + ["--stop-at", "2", "--out", f"{work}/zr"])
launch(["train"] + ck + ["--resume", "--out", f"{work}/zr"])
assert same_params(f"{work}/t1-adamw/final_params.h5", f"{work}/zr/final_params.h5") <= 1e-10
print("zero1 checkpoint + resume == uninterrupted")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rank_env(rank, port):
    return dict(os.environ, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


# Faults. A rank that never joins: rank 0 alone, then rank 1 alone.
for rank in (0, 1):
    t0 = time.time()
    r = subprocess.run([bs, "profile"] + TINY + ["--dist-timeout", "3", "--out", f"{work}/lonely"], env=rank_env(rank, free_port()),
                       capture_output=True, text=True, timeout=60)
    took = time.time() - t0
    assert r.returncode != 0 and took < 30, (rank, r.returncode, took)
    assert r.stderr.count("\n") == 1 and f"[rank {rank} of 2]" in r.stderr and "never joined" in r.stderr, r.stderr
print("a rank that never joins: the other exits with one line")

# A rank killed mid-training: the survivor exits non-zero within the timeout.
port = free_port()
long_run = ["train"] + TINY + ["--steps", "100000", "--dist-timeout", "10", "--out", f"{work}/dies"]
procs = [subprocess.Popen([bs] + long_run, env=rank_env(r, port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) for r in (0, 1)]
time.sleep(4)
assert procs[0].poll() is None and procs[1].poll() is None, "ranks did not start training"
procs[1].kill()
t0 = time.time()
err = procs[0].communicate(timeout=60)[1]
assert procs[0].returncode != 0 and time.time() - t0 < 30, (procs[0].returncode, time.time() - t0)
assert err.count("\n") == 1 and "[rank 0 of 2]" in err, err
print("a rank killed mid-run: the survivor exits with one line:", err.strip())

# Bad input.
bad = [
    (["launch", "-n", "2", "--", "train"] + TINY[:-1] + ["3", "--steps", "1", "--out", f"{work}/b1"], "--batch-size"),
    (["train"] + TINY + ["--zero1", "--steps", "1", "--out", f"{work}/b2"], "--zero1"),
    (["launch", "-n", "2", "--", "train"] + TINY + ["--zero1", "--optimizer", "frugal", "--steps", "1", "--out", f"{work}/b3"], "--zero1"),
    (["launch", "-n", "2", "--", "train"] + TINY + ["--dist-backend", "nccl", "--steps", "1", "--out", f"{work}/b4"], "nccl"),
]
for args, culprit in bad:
    r = subprocess.run([bs] + args, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and culprit in r.stderr, (args, r.stderr)
    assert "Traceback" not in r.stderr and "terminate called" not in r.stderr, r.stderr
r = subprocess.run([bs, "profile"] + TINY + ["--out", f"{work}/b5"], env=dict(os.environ, WORLD_SIZE="2"),
                   capture_output=True, text=True, timeout=60)
assert r.returncode != 0 and "RANK" in r.stderr and r.stderr.count("\n") == 1, r.stderr
print("bad input: one line naming the culprit")

# bench dist at toy size: efficiencies follow from the reported throughputs; a 2-rank step hands over at
# least the whole float32 gradient (4 bytes per parameter), a 1-rank run nothing.
r = run(["bench", "dist", "--model", "gpt2-tiny", "--steps", "3", "--batch-size", "4", "--out", f"{work}/bench"])
b = json.loads(r.stdout)
n_params = 120576
for series in ("strong_scaling", "weak_scaling"):
    base = b[series][0]
    assert base["ranks"] == 1 and base["bytes_communicated_per_rank_per_step"] == 0, base
    for row in b[series]:
        eff = row["examples_per_second"] / (row["ranks"] * base["examples_per_second"])
        assert abs(row["scaling_efficiency"] - eff) <= 1e-12 * eff, row
    two = b[series][1]
    assert two["ranks"] == 2 and two["bytes_communicated_per_rank_per_step"] >= 4 * n_params, two
print("bench dist: efficiencies and bytes per step consistent")
