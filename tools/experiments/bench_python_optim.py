"""Step time of blocksharp.optim.AdamW called from Python against torch.optim.AdamW(foreach=True), on
the 33.6M float32 parameters of `blocksharp bench optim` (a GPT-2-like model: 8 layers, width 512,
vocabulary 16384), in one process, interleaved rounds, the median of each. Also reports the Python
side of a blocksharp step (lr collection and the call, on a one-element model).

    PYTHONPATH=build/python /usr/bin/python3 tools/experiments/bench_python_optim.py [--steps 20] [--threads N]
"""
import argparse
import statistics
import time

import torch

import blocksharp
from blocksharp import optim

ap = argparse.ArgumentParser()
ap.add_argument("--steps", type=int, default=20, help="timed steps per optimizer and round")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
ap.add_argument("--layers", type=int, default=8)
ap.add_argument("--dim", type=int, default=512)
ap.add_argument("--vocab", type=int, default=16384)
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)


def shapes():
    d = a.dim
    out = [("wte.weight", (a.vocab, d))]
    for layer in range(a.layers):
        h = f"h.{layer}."
        out += [(h + "ln_1.weight", (d,)), (h + "ln_1.bias", (d,))]
        for p in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out += [(h + f"attn.{p}.weight", (d, d)), (h + f"attn.{p}.bias", (d,))]
        out += [(h + "ln_2.weight", (d,)), (h + "ln_2.bias", (d,)), (h + "mlp.fc_in.weight", (4 * d, d)),
                (h + "mlp.fc_in.bias", (4 * d,)), (h + "mlp.fc_out.weight", (d, 4 * d)), (h + "mlp.fc_out.bias", (d,))]
    return out + [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]


def model():
    g = torch.Generator().manual_seed(0)
    named = []
    for n, s in shapes():
        p = torch.nn.Parameter(torch.randn(s, generator=g) * 0.02)
        p.grad = torch.randn(s, generator=g) * 1e-3
        named.append((n, p))
    return named


def time_steps(opt, steps):
    opt.step()  # state allocated outside the timing
    t = []
    for _ in range(steps):
        t0 = time.perf_counter()
        opt.step()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


named_t, named_b = model(), model()
n = sum(p.numel() for _, p in named_t)
ref = torch.optim.AdamW([p for _, p in named_t], lr=1e-3, weight_decay=0.01, foreach=True)
mine = optim.AdamW(named_b, lr=1e-3, weight_decay=0.01)
rounds = {"torch": [], "blocksharp": []}
for _ in range(a.rounds):
    rounds["torch"].append(time_steps(ref, a.steps))
    rounds["blocksharp"].append(time_steps(mine, a.steps))
tt, tb = statistics.median(rounds["torch"]), statistics.median(rounds["blocksharp"])

# Both took the same steps from the same values and gradients: they must agree (float32 rounding).
gap = max((pt - pb).abs().max().item() for (_, pt), (_, pb) in zip(named_t, named_b))
tiny = optim.AdamW([("w", torch.nn.Parameter(torch.zeros(1)))], lr=1e-3)
tiny.param_groups[0]["params"][0].grad = torch.zeros(1)
overhead = time_steps(tiny, 2000)
t0 = time.perf_counter()
for _ in range(1000):
    mine._check_fixed()
    lrs = [float(mine.param_groups[g]["lr"]) for g in mine._group_of]
prologue = (time.perf_counter() - t0) / 1000
print(f"parameters: {n / 1e6:.1f}M float32 in {len(named_t)} tensors, threads {torch.get_num_threads()}, "
      f"{a.steps} steps x {a.rounds} rounds (median)")
def spread(k):
    return f"(rounds {min(rounds[k]) * 1e3:.1f}-{max(rounds[k]) * 1e3:.1f})"


print(f"torch.optim.AdamW(foreach=True): {tt * 1e3:8.2f} ms/step {spread('torch')}")
print(f"blocksharp.optim.AdamW:          {tb * 1e3:8.2f} ms/step {spread('blocksharp')}")
print(f"speed-up: {tt / tb:.2f}x (largest parameter difference after the same steps: {gap:.2e})")
print(f"Python-side overhead per step: {prologue * 1e6:.1f} us collecting {len(lrs)} lrs and checking the groups; "
      f"{overhead * 1e6:.1f} us for a whole step of a 1-element model (call included)")
