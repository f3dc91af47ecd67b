"""profile's outputs (profile.h5, adam_mini.json, blockwise_lr.json, sgd_sai.json) appear as a unit.
The process is killed (SIGKILL, through the BLOCKSHARP_TEST_KILL_AT_STEP hook) before each step of
the commit: the incomplete-manifest write, each of the four renames, the complete-manifest write. The
oracle for every instant: either the previous complete set is untouched and readable, or every config
read refuses with one line (interrupted set); never a new file read beside old ones. A hand-mixed
folder (one config from another run) is refused too; a rerun repairs the folder and removes the dead
run's temporary files. Usage: test_output_set.py BLOCKSHARP WORKDIR"""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

blocksharp, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
profile = [blocksharp, "profile", "--set", "n_layer=1", "--set", "dim=16", "--set", "n_heads=2", "--seq-len", "8",
           "--batch-size", "2", "--topk", "1", "--probes", "3", "--density-runs", "0", "--block-eigs", "none",
           "--tol", "1e-4", "--threads", "1"]
CONFIGS = ("adam_mini.json", "blockwise_lr.json", "sgd_sai.json")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def set_ids(d):
    ids = {n: json.load(open(os.path.join(d, n)))["set_id"] for n in CONFIGS}
    with h5py.File(os.path.join(d, "profile.h5")) as f:
        a = f.attrs["set_id"]
        ids["profile.h5"] = a.decode() if isinstance(a, bytes) else str(a)
    return ids


def reads(d):
    """(all readable, stderr lines of the refusals) for `config show` of every config in d."""
    results = [subprocess.run([blocksharp, "config", "show", os.path.join(d, n)], capture_output=True, text=True)
               for n in CONFIGS]
    return all(r.returncode == 0 for r in results), [r.stderr.strip() for r in results if r.returncode != 0]


old = os.path.join(work, "old")
subprocess.run(profile + ["--seed", "1", "--out", old], capture_output=True, check=True)
manifest = json.load(open(os.path.join(old, "profile.manifest.json")))
ids = set_ids(old)
check(manifest["complete"] and set(ids.values()) == {manifest["set_id"]} and
      sorted(manifest["files"]) == sorted(("profile.h5",) + CONFIGS),
      f"a complete set: one id in every file and the manifest ({manifest['set_id']})")
check(reads(old)[0], "a complete set reads")

for step in range(6):  # 0: incomplete manifest, 1-4: renames, 5: complete manifest
    d = os.path.join(work, f"kill{step}")
    shutil.copytree(old, d)
    env = dict(os.environ, BLOCKSHARP_TEST_KILL_AT_STEP=str(step))
    r = subprocess.run(profile + ["--seed", "2", "--out", d], capture_output=True, text=True, env=env)
    check(r.returncode == -9, f"step {step}: killed (rc {r.returncode})")
    m = json.load(open(os.path.join(d, "profile.manifest.json")))
    ok, errors = reads(d)
    if step == 0:
        check(m == manifest and set_ids(d) == ids and ok, "step 0: the old set untouched and readable")
    else:
        one_line = all(len(e.splitlines()) == 1 and e.startswith("blocksharp: error:") and "interrupted" in e
                       for e in errors)
        check(not m["complete"] and not ok and len(errors) == 3 and one_line,
              f"step {step}: every config refused as an interrupted set ({errors[:1]})")
        t = subprocess.run([blocksharp, "train", "--steps", "1", "--optimizer", "adam-mini", "--config",
                            os.path.join(d, "adam_mini.json"), "--out", os.path.join(work, f"train{step}")],
                           capture_output=True, text=True)
        check(t.returncode == 1 and "interrupted" in t.stderr, f"step {step}: train --config refuses it too")
    if step == 3:  # rerun over the debris: complete again, the dead run's temporary files gone
        left = [f for f in os.listdir(d) if ".tmp." in f]
        subprocess.run(profile + ["--seed", "2", "--out", d], capture_output=True, check=True)
        after = [f for f in os.listdir(d) if ".tmp." in f]
        m = json.load(open(os.path.join(d, "profile.manifest.json")))
        check(len(left) > 0 and not after and m["complete"] and set(set_ids(d).values()) == {m["set_id"]} and reads(d)[0],
              f"a rerun completes the set and removes {len(left)} temporary files of the killed run")

mixed = os.path.join(work, "mixed")
shutil.copytree(old, mixed)
shutil.copy(os.path.join(work, "kill3", "sgd_sai.json"), os.path.join(mixed, "sgd_sai.json"))
r = subprocess.run([blocksharp, "config", "show", os.path.join(mixed, "sgd_sai.json")], capture_output=True, text=True)
check(r.returncode == 1 and "another run" in r.stderr and len(r.stderr.strip().splitlines()) == 1,
      f"a config from another run beside a set is refused: {r.stderr.strip()[:160]}")
alone = os.path.join(work, "alone")
os.makedirs(alone)
shutil.copy(os.path.join(old, "sgd_sai.json"), os.path.join(alone, "copied.json"))
r = subprocess.run([blocksharp, "config", "show", os.path.join(alone, "copied.json")], capture_output=True, text=True)
check(r.returncode == 0, "a config copied away from its set stands alone")

# train's final set (final_params.h5, train_summary.json): killed before each commit step, --resume
# completes it exactly as the uninterrupted run wrote it; only a complete set is "already finished".
train = [blocksharp, "train", "--set", "n_layer=1", "--set", "dim=16", "--set", "n_heads=2", "--seq-len", "8",
         "--batch-size", "2", "--steps", "2", "--checkpoint-every", "1", "--threads", "1"]
whole = os.path.join(work, "train_whole")
subprocess.run(train + ["--out", whole], capture_output=True, check=True)
ref_summary = json.load(open(os.path.join(whole, "train_summary.json")))
with h5py.File(os.path.join(whole, "final_params.h5")) as f:
    ref_params = {k: f[k][()] for k in f.keys()}
for step in range(4):  # 0: incomplete manifest, 1-2: renames, 3: complete manifest
    d = os.path.join(work, f"train_kill{step}")
    env = dict(os.environ, BLOCKSHARP_TEST_KILL_AT_STEP=str(step))
    r = subprocess.run(train + ["--out", d], capture_output=True, text=True, env=env)
    m = json.load(open(os.path.join(d, "train.manifest.json"))) if step > 0 else {"complete": False}
    r2 = subprocess.run(train + ["--resume", "--out", d], capture_output=True, text=True)
    with h5py.File(os.path.join(d, "final_params.h5")) as f:
        same = all(np.array_equal(f[k][()], v) for k, v in ref_params.items()) and len(f.keys()) == len(ref_params)
    summary = json.load(open(os.path.join(d, "train_summary.json")))
    m2 = json.load(open(os.path.join(d, "train.manifest.json")))
    check(r.returncode == -9 and not m["complete"] and r2.returncode == 0 and "already finished" not in r2.stdout and same
          and summary["final_train_loss"] == ref_summary["final_train_loss"] and m2["complete"]
          and m2["set_id"] == summary["set_id"],
          f"train killed at commit step {step}: --resume completes the set, parameters bit-identical")

print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
sys.exit(1 if failures else 0)
