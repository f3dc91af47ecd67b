"""How far coordinate-wise clipping's threshold moves from one training step to the next.

A question for the clipping optimizers' threshold (optimizers/order_statistic.h): could the previous
step's threshold stand in for the strided sample that brackets the wanted rank, so that a step reads
the gradients once for the threshold without the sample's ~26,000 scattered cache lines? Only if the
threshold tau (|g| at descending index int(N c) over all parameters, ALGORITHMS.md 8.2) moves little
between steps. This trains the PyTorch twins of gpt2-small-cpu and llama-small-cpu
(bench_train_pytorch.py) on the GPL-3 text, byte tokens, batch 8, and reports per step how far tau
moved (|tau_t / tau_{t-1} - 1|), and for brackets [tau_{t-1} (1 - rho), tau_{t-1} (1 + rho)] how
often tau_t fell inside and what fraction of all values they hold (the sampled bracket holds 1.9-3.1 %).

    /usr/bin/python3 tools/experiments/clip_threshold_drift.py --steps 60 [--warmup 0]

--warmup trains that many steps first (no measurement) to look at later training.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_train_pytorch as b  # noqa: E402

RHOS = (0.01, 0.02, 0.04, 0.08, 0.16)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default="gpt2-small-cpu,llama-small-cpu")
    ap.add_argument("--runs", default="sgd:0.1,adam:0.5", help="optimizer:clip fraction, the paper's defaults")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    text = open("/usr/share/common-licenses/GPL-3", "rb").read()
    data = torch.tensor(list(text), dtype=torch.long)
    for name in a.models.split(","):
        for run in a.runs.split(","):
            opt_name, frac = run.split(":")
            frac = float(frac)
            c = b.PRESETS[name]
            torch.manual_seed(0)
            model = b.Gpt2(c) if c["family"] == "gpt2" else b.Llama(c)
            b.init_like_blocksharp(model, c)
            if opt_name == "sgd":
                opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            else:
                opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            T = c["seq_len"]
            taus, hits, kept = [], {r: 0 for r in RHOS}, {r: [] for r in RHOS}
            for step in range(a.warmup + a.steps):
                i = torch.randint(0, len(data) - T - 1, (8,))
                x = torch.stack([data[j:j + T] for j in i])
                y = torch.stack([data[j + 1:j + T + 1] for j in i])
                loss = F.cross_entropy(model(x).reshape(-1, c["vocab"]), y.reshape(-1))
                opt.zero_grad()
                loss.backward()
                if step >= a.warmup:
                    g = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None]).abs()
                    tau = g.sort(descending=True).values[int(g.numel() * frac)].item()
                    if taus:
                        for r in RHOS:
                            lo, hi = taus[-1] * (1 - r), taus[-1] * (1 + r)
                            hits[r] += lo <= tau <= hi
                            kept[r].append(((g >= lo) & (g <= hi)).double().mean().item())
                    taus.append(tau)
                opt.step()
            moves = sorted(abs(taus[k] / taus[k - 1] - 1) for k in range(1, len(taus)))
            print(f"{name} {opt_name} c={frac} steps {a.warmup}-{a.warmup + a.steps - 1}: tau {taus[0]:.3g} -> "
                  f"{taus[-1]:.3g}; step-to-step move median {moves[len(moves) // 2]:.3f}, "
                  f"p90 {moves[int(0.9 * len(moves))]:.3f}, max {moves[-1]:.3f}")
            for r in RHOS:
                k = sorted(kept[r])
                print(f"  bracket +-{r:.2f}: tau inside {hits[r]}/{len(moves)}, "
                      f"holds {100 * k[len(k) // 2]:.2f} % of values (median)")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
