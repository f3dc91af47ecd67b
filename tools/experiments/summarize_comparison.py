"""Summarizes compare_optimizers.sh runs into Markdown: final validation loss (mean and spread over
seeds), steps to reach AdamW's mean final validation loss, optimizer-state bytes, wall time, commands,
and a plot of the validation-loss curves (REPORT minus .md plus _val_loss.png).
Usage: summarize_comparison.py OUT REPORT STEPS MODEL DATA"""
import glob
import json
import os
import re
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out, report, steps, model, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
names = ["adamw", "adam-mini", "adamw+blockwise", "adamw+blockwise-inverse", "adam-mini+blockwise", "sgd-sai",
         "apollo-mini"]
runs = {}
for name in names:
    for summary in sorted(glob.glob(os.path.join(out, name, "seed*", "train_summary.json"))):
        s = json.load(open(summary))
        curve = []
        for line in open(os.path.dirname(summary) + ".log"):
            m = re.match(r"step\s+(\d+)\s+train_loss \S+\s+val_loss (\S+)", line)
            if m:
                curve.append((int(m.group(1)), float(m.group(2))))
        curve.append((steps, s["final_val_loss"]))
        runs.setdefault(name, []).append({"summary": s, "curve": curve})
target = statistics.mean(r["summary"]["final_val_loss"] for r in runs["adamw"])


def steps_to(curve):
    return next((st for st, v in curve if v <= target), None)


lines = [f"# Optimizer comparison: {model} on {data}, {steps} steps",
         "",
         f"Produced by `tools/experiments/compare_optimizers.sh`; AdamW's mean final validation loss "
         f"({target:.4f}) is the target of the 'steps to AdamW's loss' column (first evaluation at or below it).",
         "",
         "| optimizer | seeds | final val loss (mean ± spread) | steps to AdamW's loss | state bytes | wall time (s) |",
         "|---|---|---|---|---|---|"]
for name in names:
    rs = runs.get(name, [])
    if not rs:
        continue
    finals = [r["summary"]["final_val_loss"] for r in rs]
    spread = (max(finals) - min(finals)) / 2
    reach = [steps_to(r["curve"]) for r in rs]
    reach_s = ", ".join("-" if x is None else str(x) for x in reach)
    lines.append(f"| {name} | {len(rs)} | {statistics.mean(finals):.4f} ± {spread:.4f} | {reach_s} | "
                 f"{rs[0]['summary']['optimizer_state_bytes']:,} | {statistics.mean(r['summary']['seconds'] for r in rs):.1f} |")
# Validation-loss curves (mean over seeds) next to the report.
fig, ax = plt.subplots(figsize=(7, 4.2))
for name in names:
    rs = runs.get(name, [])
    if not rs:
        continue
    steps_axis = [st for st, _ in rs[0]["curve"]]
    mean = [statistics.mean(r["curve"][i][1] for r in rs) for i in range(len(steps_axis))]
    ax.plot(steps_axis, mean, marker=".", label=name)
ax.axhline(target, color="gray", lw=0.8, ls="--", label="AdamW final (mean)")
ax.set_xlabel("step")
ax.set_ylabel("validation loss (nats)")
ax.set_title(f"{model} on {data}: mean over seeds")
ax.legend(fontsize=8)
fig.tight_layout()
png = os.path.splitext(report)[0] + "_val_loss.png"
fig.savefig(png + ".tmp.png", dpi=110)
os.replace(png + ".tmp.png", png)
lines += ["", f"![validation loss]({os.path.basename(png)})"]
commands = []
for f in sorted(glob.glob(os.path.join(out, "commands*.txt"))):
    commands += open(f).read().splitlines()
lines += ["", "## Commands", "", "```"] + commands + ["```", ""]
os.makedirs(os.path.dirname(report) or ".", exist_ok=True)
with open(report + ".tmp", "w") as f:
    f.write("\n".join(lines))
os.replace(report + ".tmp", report)
print("\n".join(lines[:12 + len(names)]))
