"""Acceptance check of the train loop: a TorchScript model trained 5 steps in float64 with
`--optimizer adamw --schedule constant --warmup 0 --grad-clip 0` ends with the parameters that
torch.optim.AdamW reaches on the same batches (rows [iB, (i+1)B), wrapping). Tolerance 1e-10 relative.
Oracle: PyTorch's AdamW. Usage: test_adamw_vs_torch.py BLOCKSHARP WORKDIR"""
import os
import subprocess
import sys

import h5py
import torch

sys.path.insert(0, os.path.dirname(__file__))
from models import loss_fn, make_case  # noqa: E402

blocksharp, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
gen = torch.Generator().manual_seed(1)
B, steps, rows = 4, 5, 10
failures = 0
for kind in ["mlp", "lm"]:
    model, x, y, loss_name = make_case(kind, rows, gen)
    pt, data, out = os.path.join(work, f"{kind}.pt"), os.path.join(work, f"{kind}.h5"), os.path.join(work, kind)
    model.save(pt)
    with h5py.File(data, "w") as f:
        f["inputs"] = x.numpy()
        f["targets"] = y.numpy()
    m = torch.jit.load(pt).double()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.05)
    for i in range(steps):
        idx = torch.tensor([(i * B + r) % rows for r in range(B)])
        xb = x[idx].double() if x.is_floating_point() else x[idx]
        opt.zero_grad()
        loss_fn(loss_name, m(xb), y[idx]).backward()
        opt.step()
    cmd = [blocksharp, "train", "--model", pt, "--data", data, "--loss", loss_name, "--dtype", "float64",
           "--batch-size", str(B), "--steps", str(steps), "--optimizer", "adamw", "--lr", "1e-2",
           "--beta2", "0.99", "--weight-decay", "0.05", "--schedule", "constant", "--warmup", "0",
           "--grad-clip", "0", "--out", out]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"[{kind}] blocksharp failed: {r.stderr}")
        failures += 1
        continue
    worst = 0.0
    with h5py.File(os.path.join(out, "final_params.h5")) as f:
        for n, p in m.named_parameters():
            got = torch.from_numpy(f[n][()])
            worst = max(worst, ((got - p.detach()).norm() / p.detach().norm()).item())
    print(f"[{kind}] worst relative parameter difference after {steps} steps: {worst:.3g}")
    if not worst <= 1e-10:
        failures += 1
print(f"{2 - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
