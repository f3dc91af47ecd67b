"""The optimizer-comparison script end to end at toy size (gpt2-tiny, 6 steps, 2 seeds). Oracle: the
report has one row per optimizer, with the two seeds and the state bytes from each train_summary.json.
Usage: test_compare_script.py BLOCKSHARP WORKDIR SCRIPT"""
import json
import os
import shutil
import subprocess
import sys

blocksharp, work, script = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(work, ignore_errors=True)
env = dict(os.environ, MODEL="gpt2-tiny", STEPS="6", SEEDS="0 1", BATCH="2", EVAL_EVERY="3",
           OUT=os.path.join(work, "out"), REPORT=os.path.join(work, "results.md"), BLOCKSHARP=blocksharp)
r = subprocess.run(["bash", script], capture_output=True, text=True, env=env)
assert r.returncode == 0, r.stderr[-2000:]
report = open(os.path.join(work, "results.md")).read()
rows = [l for l in report.splitlines() if l.startswith("| ") and not l.startswith("| optimizer")]
failures = []
if len(rows) != 7:
    failures.append(f"{len(rows)} rows")
for name in ["adamw", "adam-mini", "adamw+blockwise", "adamw+blockwise-inverse", "adam-mini+blockwise", "sgd-sai",
             "apollo-mini"]:
    s = json.load(open(os.path.join(work, "out", name, "seed0", "train_summary.json")))
    row = next((l for l in rows if l.startswith(f"| {name} |")), "")
    if f"{s['optimizer_state_bytes']:,}" not in row or "| 2 |" not in row:
        failures.append(f"row for {name}: {row}")
if not os.path.getsize(os.path.join(work, "results_val_loss.png")) > 0:
    failures.append("no validation-loss plot")
for f in failures:
    print("FAIL:", f)
print(f"{1 - bool(failures)} passed, {int(bool(failures))} failed")
sys.exit(1 if failures else 0)
