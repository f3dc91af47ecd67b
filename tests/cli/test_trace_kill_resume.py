"""trace.h5 survives kill -9: a training run with --trace-every is killed at a random point, resumed
with --resume, and must end with (a) the same parameters as an uninterrupted run (bit for bit) and
(b) a readable trace.h5 whose /step holds every trace step exactly once and whose every column equals
the uninterrupted run's bit for bit. Oracle: the uninterrupted run.
Usage: test_trace_kill_resume.py BLOCKSHARP WORKDIR"""
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
common = [blocksharp, "train", "--set", "n_layer=1", "--set", "dim=32", "--set", "n_heads=2", "--seq-len", "16",
          "--batch-size", "4", "--steps", "60", "--trace-every", "4", "--trace-probes", "3", "--checkpoint-every", "5",
          "--eval-batches", "2"]
full, crashed = os.path.join(work, "full"), os.path.join(work, "crashed")
r = subprocess.run(common + ["--out", full], capture_output=True, text=True)
assert r.returncode == 0, r.stderr

p = subprocess.Popen(common + ["--out", crashed], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
trace = os.path.join(crashed, "trace.h5")
deadline = time.time() + 120
while time.time() < deadline:
    try:
        with h5py.File(trace, "r") as f:
            if len(f["step"]) >= 6:
                break
    except (OSError, KeyError):
        pass
    time.sleep(0.05)
os.kill(p.pid, signal.SIGKILL)
p.wait()
with h5py.File(trace, "r") as f:  # readable right after the kill
    killed_at = list(f["step"][()])
r = subprocess.run(common + ["--out", crashed, "--resume"], capture_output=True, text=True)
assert r.returncode == 0, r.stderr

failures = []
with h5py.File(os.path.join(full, "final_params.h5")) as a, h5py.File(os.path.join(crashed, "final_params.h5")) as b:
    for name in a:
        if not np.array_equal(a[name][()], b[name][()]):
            failures.append(f"parameter {name} differs from the uninterrupted run")
with h5py.File(os.path.join(full, "trace.h5")) as a, h5py.File(trace) as b:
    steps = list(b["step"][()])
    if steps != list(range(4, 61, 4)):
        failures.append(f"trace steps {steps}")
    if list(a["step"][()]) != steps:
        failures.append("uninterrupted trace has other steps")
    # Same parameters at every record and the tracer's warm start checkpointed: every column is the
    # uninterrupted run's, bit for bit.
    for col in ("loss", "probe_loss", "lr", "grad_norm", "sharpness/lambda_max", "sharpness/directional",
                "sharpness/lanczos_products"):
        if not np.array_equal(a[col][()], b[col][()]):
            failures.append(f"{col} differs from the uninterrupted run")
print(f"killed with trace steps {killed_at}; resumed")
for f in failures:
    print("FAIL:", f)
print(f"{1 - bool(failures)} passed, {int(bool(failures))} failed")
sys.exit(1 if failures else 0)
