"""reproduce_papers.sh end to end at toy size (gpt2-tiny and llama-tiny, byte tokens, 6 steps, 2 seeds,
a 2-point lr sweep). Oracles: the sweep's pick is the lr whose train_summary.json has the lowest final
validation loss; the report has one row per run kind and model with both seeds and each run's state
bytes; the derived run wrote its derived/ set at DERIVE_AT; the claims section is there.
Usage: test_reproduce_script.py BLOCKSHARP WORKDIR SCRIPT"""
import json
import os
import shutil
import subprocess
import sys

blocksharp, work, script = sys.argv[1], sys.argv[2], sys.argv[3]
shutil.rmtree(work, ignore_errors=True)
out, report = os.path.join(work, "out"), os.path.join(work, "docs", "papers.md")
env = dict(os.environ, MODELS="gpt2-tiny llama-tiny", TOKENIZER="byte", STEPS="6", SWEEP_STEPS="3",
           LRS="1e-3 3e-3", SEEDS="0 1", BATCH="2", SEQ="16", EVAL_EVERY="3", DERIVE_AT="2", OUT=out, REPORT=report,
           BLOCKSHARP=blocksharp, JOBS="2")
r = subprocess.run(["bash", script], capture_output=True, text=True, env=env)
assert r.returncode == 0, r.stderr[-3000:]
text = open(report).read()
for model in ("gpt2-tiny", "llama-tiny"):
    m = os.path.join(out, model)
    losses = {lr: json.load(open(os.path.join(m, "sweep", f"lr{lr}", "train_summary.json")))["final_val_loss"]
              for lr in ("1e-3", "3e-3")}
    best = min(losses, key=losses.get)
    assert open(os.path.join(m, "best_lr.txt")).read().strip() == best, (model, losses)
    assert f"## Optimizer comparison: {model}" in text and f"best {best}." in text
    section = text.split(f"## Optimizer comparison: {model}")[1].split("## Optimizer comparison")[0]
    for name in ("adamw", "adamw+blockwise", "adamw+blockwise-derived", "adam-mini", "adam-mini+blockwise"):
        s = json.load(open(os.path.join(m, name, "seed1", "train_summary.json")))
        row = next((l for l in section.splitlines() if l.startswith(f"| {name} |")), "")
        assert f"{s['optimizer_state_bytes']:,}" in row and "| 2 |" in row, (model, name, row)
    assert os.path.exists(os.path.join(m, "adamw+blockwise-derived", "seed0", "derived", "blockwise_lr.json"))
    assert os.path.getsize(os.path.join(work, "docs", f"papers_{model}_val_loss.png")) > 0
    assert "Claims, as measured:" in section and "- adam-mini:" in section
print("reproduce_papers.sh: sweep picks, rows, derived sets and claims present for both models")
