"""`config diff A B`: the oracle is a known edit. B is A's blockwise_lr.json with one group multiplier
changed, one parameter moved to another group, one removed and one added; diff must print exactly
those lines, say "the same" for A against itself (provenance
aside), and refuse two configs of different kinds in one line. Usage: test_config_diff.py BLOCKSHARP WORKDIR"""
import json
import os
import shutil
import subprocess
import sys

bs, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
subprocess.run([bs, "profile", "--set", "n_layer=1", "--seq-len", "16", "--batch-size", "2", "--topk", "1", "--probes",
                "4", "--density-runs", "0", "--block-eigs", "none", "--out", work], check=True, capture_output=True)
a_path = os.path.join(work, "blockwise_lr.json")
with open(a_path) as f:
    a = json.load(f)
b = json.loads(json.dumps(a))
b["command_line"] = "something else"  # provenance: not a difference
qk = next(g for g in b["groups"] if g["group"] == "QK")
old_mult = qk["multiplier"]
qk["multiplier"] = old_mult / 2
moved = next(p for p in b["params"] if p["group"] == "FFN")
moved["group"] = "VO"
removed = b["params"].pop(0)
b["params"].append({"name": "extra.weight", "group": "Other", "shape": [2, 2]})
b_path = os.path.join(work, "b.json")
with open(b_path, "w") as f:
    json.dump(b, f)

r = subprocess.run([bs, "config", "diff", a_path, b_path], capture_output=True, text=True)
lines = r.stdout.splitlines()
want = [
    f"~ groups[QK].multiplier: {old_mult:.6g} -> {old_mult / 2:.6g} (x0.5)",
    f"~ params[{moved['name']}].group: \"FFN\" -> \"VO\"",
    f"- params[{removed['name']}]",
    "+ params[extra.weight]",
]
failures = [w for w in want if w not in lines]
if r.returncode != 0 or failures or not lines[-1].startswith(f"{len(lines) - 1} differences"):
    print(r.stdout, r.stderr)
    print("missing:", failures)
    sys.exit(1)
extra = [l for l in lines[:-1] if l not in want]
assert not extra, f"unexpected lines: {extra}"
print(f"diff A B: the {len(want)} edits, nothing else")

r = subprocess.run([bs, "config", "diff", a_path, a_path], capture_output=True, text=True)
assert r.returncode == 0 and "the same blockwise_lr config" in r.stdout, r.stdout + r.stderr
r = subprocess.run([bs, "config", "diff", a_path, os.path.join(work, "adam_mini.json")], capture_output=True, text=True)
err = [l for l in r.stderr.splitlines() if l.strip()]
assert r.returncode != 0 and len(err) == 1 and err[0].startswith("blocksharp: error: config diff:"), r.stderr
print("diff A A: the same; blockwise_lr vs adam_mini: refused in one line")
