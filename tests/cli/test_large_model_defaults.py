"""Large-model defaults of `profile`: above BLOCKSHARP_LARGE_MODEL parameters (50M unless set; here 1000
so that gpt2-tiny counts as large) the options the user did not give take cheaper values, stderr names
each, and profile.h5 records what ran. Oracle: the same run with those values given explicitly writes
the same numbers, bit for bit; an option the user gave is kept; below the threshold nothing changes.
Usage: test_large_model_defaults.py BLOCKSHARP WORKDIR"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

blocksharp, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
base = [blocksharp, "profile", "--set", "dim=32", "--topk", "1", "--probes", "6"]
failed = 0


def check(ok, what):
    global failed
    print(("ok   " if ok else "FAIL ") + what)
    failed += not ok


def run(extra, out, env=None):
    r = subprocess.run(base + extra + ["--out", os.path.join(work, out)], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    assert r.returncode == 0, r.stderr
    return r.stderr, h5py.File(os.path.join(work, out, "profile.h5"), "r")


note_a, a = run([], "large", {"BLOCKSHARP_LARGE_MODEL": "1000"})
note_b, b = run(["--block-eigs", "none", "--density-runs", "1", "--tol", "1e-4"], "explicit")
note_c, c = run(["--density-runs", "0"], "small")
n = int(a["/global/numel"][()])
check("large-model defaults --block-eigs none --density-runs 1 --tol 1e-4 (give an option to choose it)" in note_a
      and "--probes" not in note_a.split("defaults")[1], f"the note names what changed, not --probes (given): {note_a.strip()}")
check(f"note: {n} parameters" in note_a, "the note gives the parameter count")
check("large-model" not in note_b + note_c, "no note below the threshold")
attrs = lambda f: {k: f.attrs[k].decode() if isinstance(f.attrs[k], bytes) else str(f.attrs[k])  # noqa: E731
                   for k in ("topk", "probes", "tol", "block_eigs", "density_runs", "density_steps")}
check(attrs(a) == attrs(b) == {"topk": "1", "probes": "6", "tol": "0.0001", "block_eigs": "none", "density_runs": "1",
                               "density_steps": "80"}, f"profile.h5 records what ran: {attrs(a)}")
check(attrs(c)["tol"] == "1e-10" and attrs(c)["block_eigs"] == "kinds", f"small-model defaults kept: {attrs(c)}")
for path in ("/global/eigenvalues", "/global/trace", "/global/n_hvp_total", "/blocks/trace", "/blocks/lambda_max",
             "/density/values"):
    check(np.array_equal(a[path][()], b[path][()], equal_nan=True), f"{path} equals the explicit run's bit for bit")
check(np.isnan(a["/blocks/lambda_max"][()]).all() and not np.isnan(c["/kinds/lambda_max"][()]).all(),
      "--block-eigs none leaves block lambda_max unmeasured; the small-model default measures them")
sys.exit(1 if failed else 0)
