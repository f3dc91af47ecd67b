"""Summarizes calibrate_blockwise.sh: per lr group the measured average sharpness (Hutchinson
Tr(H_bb)/numel of the group's non-bias tensors, with biases beside it, and the Gauss-Newton diagonal), the inverse-sharpness multipliers at the
shipped defaults, the exponent that best fits the paper's table (least squares in log space over
Emb, QK, VO, FFN, Norm; the formula is blockwise_lr.cpp's: clamp((S_sharpest/S_g)^a, min, max)), and
the orderings compared with the paper's S(Emb) < S(QK) < S(FFN) < S(VO) < S(Norm).
Usage: summarize_calibration.py OUT REPORT"""
import json
import math
import os
import sys

import h5py
import numpy as np

out, report = sys.argv[1], sys.argv[2]
cfg = json.load(open(os.path.join(out, "profile", "blockwise_lr.json")))
policy = cfg["policy"]
with h5py.File(os.path.join(out, "profile", "profile.h5")) as f:
    names = [n.decode() if isinstance(n, bytes) else n for n in f["blocks/name"][()]]
    gn = dict(zip(names, f["blocks/gn_diag_avg"][()]))
    numel = dict(zip(names, f["blocks/numel"][()]))
    kind = dict(zip(names, [k.decode() if isinstance(k, bytes) else k for k in f["blocks/kind"][()]]))
paper = {"Emb": 10.0, "QK": 8.0, "FFN": 6.0, "VO": 4.0, "Norm": 1.0}
groups = {g["group"]: g for g in cfg["groups"]}
for g in groups.values():
    ps = [p for p in g["params"] if kind[p] != "Bias"] or g["params"]  # as blockwise_lr.cpp: biases stay out
    g["gn"] = sum(gn[p] * numel[p] for p in ps) / sum(numel[p] for p in ps)
sharpest = max(g["avg_sharpness"] for g in groups.values() if math.isfinite(g["avg_sharpness"]))
lo, hi = policy["min_multiplier"], policy["max_multiplier"]


def mult(s, a):
    m = (sharpest / s) ** a if (math.isfinite(s) and s > 0) else hi
    return min(max(m, lo), hi)


def misfit(a):
    return sum((math.log(mult(groups[k]["avg_sharpness"], a)) - math.log(v)) ** 2 for k, v in paper.items() if k in groups)


grid = np.round(np.arange(0.05, 1.501, 0.01), 2)
best = min(grid, key=misfit)
order = lambda key: " < ".join(sorted([k for k in paper if k in groups], key=lambda k: groups[k][key]))
lines = [
    "# Blockwise LR: inverse-sharpness calibration against the paper's table",
    "",
    "Produced by `tools/experiments/calibrate_blockwise.sh` (GPT-2-like model, GPT-2 BPE vocabulary, Brown corpus).",
    f"Policy defaults: exponent {policy['exponent']}, multipliers clamped to [{lo}, {hi}]; sharpest group "
    f"average sharpness {sharpest:.4g}.",
    "",
    "| group | numel | avg sharpness Tr(H_bb)/numel | with biases | Gauss-Newton diag avg | multiplier (defaults) | "
    f"multiplier (best exponent {best}) | paper |",
    "|---|---|---|---|---|---|---|---|",
]
for k in ["Emb", "QK", "VO", "FFN", "Norm", "Head", "Other"]:
    if k not in groups:
        continue
    g = groups[k]
    lines.append(f"| {k} | {g['numel']:,} | {g['avg_sharpness']:.4g} | {g['avg_sharpness_with_biases']:.4g} | "
                 f"{g['gn']:.4g} | {g['multiplier']:.2f} | "
                 f"{mult(g['avg_sharpness'], best):.2f} | {paper.get(k, 1.0):g} |")
lines += [
    "",
    f"Ordering by Tr(H_bb)/numel: {order('avg_sharpness')}  ",
    f"Ordering by Gauss-Newton diagonal: {order('gn')}  ",
    "Paper (pre-trained GPT-2 small / LLaMA 0.25B): Emb < QK < FFN < VO < Norm",
    "",
    f"Log-space misfit to the paper's table: {misfit(policy['exponent']):.3f} at the default exponent, "
    f"{misfit(best):.3f} at {best} (0 = identical).",
    "",
    "## Commands",
    "",
    "```",
] + open(os.path.join(out, "commands.txt")).read().splitlines() + ["```", ""]
os.makedirs(os.path.dirname(report) or ".", exist_ok=True)
with open(report + ".tmp", "w") as f:
    f.write("\n".join(lines))
os.replace(report + ".tmp", report)
print("\n".join(lines[:20]))
