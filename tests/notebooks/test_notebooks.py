"""Notebooks execute headless (nbconvert) on small outputs produced here by blocksharp: a profile, a
structure run and two traced trainings. Oracle: each notebook runs without error and writes its figure.
Usage: test_notebooks.py BLOCKSHARP WORKDIR NOTEBOOK_DIR"""
import os
import shutil
import subprocess
import sys

blocksharp, work, nb_dir = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
small = ["--set", "n_layer=1", "--set", "dim=16", "--set", "n_heads=2", "--seq-len", "16", "--batch-size", "4"]
runs = [
    ["profile", *small, "--topk", "2", "--probes", "4", "--density-runs", "2", "--density-steps", "12",
     "--block-eigs", "none", "--out", os.path.join(work, "profile")],
    ["structure", *small, "--param", "h.0.attn.q_proj.weight", "--out", os.path.join(work, "structure")],
]
for opt in ("adamw", "adam-mini"):
    runs.append(["train", *small, "--optimizer", opt, "--steps", "12", "--trace-every", "4", "--trace-probes", "3",
                 "--eval-batches", "2", "--trace-preconditioned", "--out", os.path.join(work, "runs", opt)])
for args in runs:
    r = subprocess.run([blocksharp, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"{args[0]}: {r.stderr}"

# build/python (beside build/bin/blocksharp) holds the Python package python_loop.ipynb imports.
pkg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(blocksharp))), "python")
env = dict(os.environ, BLOCKSHARP_RESULTS=work, PATH="/usr/bin:" + os.environ.get("PATH", ""), MPLBACKEND="Agg",
           PYTHONPATH=pkg)
failed = 0
books = sorted(n for n in os.listdir(nb_dir) if n.endswith(".ipynb"))
for name in books:
    r = subprocess.run(["/usr/bin/jupyter", "nbconvert", "--to", "notebook", "--execute",
                        "--ExecutePreprocessor.timeout=300", "--output-dir", work, os.path.join(nb_dir, name)],
                       capture_output=True, text=True, env=env)
    png = os.path.join(work, name.replace(".ipynb", ".png"))
    ok = r.returncode == 0 and os.path.exists(png)
    print(f"{name}: {'ok' if ok else 'FAIL'}")
    if not ok:
        print(r.stderr[-2000:])
        failed += 1
print(f"{len(books) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
