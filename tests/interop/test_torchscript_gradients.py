"""TorchScript interop: PyTorch writes a scripted model, .h5 data and its own float64 loss and
gradients on batch 0 (rows [0, B)); blocksharp's loader must reproduce them to 1e-10 relative.
Oracle: PyTorch autograd. Usage: test_torchscript_gradients.py BLOCKSHARP WORKDIR"""
import os
import subprocess
import sys

import h5py
import torch

sys.path.insert(0, os.path.dirname(__file__))
from models import loss_fn, make_case  # noqa: E402

blocksharp, work = sys.argv[1], sys.argv[2]
checker = os.path.join(os.path.dirname(blocksharp), "check_gradients")
os.makedirs(work, exist_ok=True)
gen = torch.Generator().manual_seed(0)
B = 4
failures = 0
for kind in ["mlp", "lm", "reg"]:
    model, x, y, loss_name = make_case(kind, 10, gen)
    pt, data, ref = (os.path.join(work, f"{kind}.{ext}") for ext in ("pt", "h5", "ref.h5"))
    model.save(pt)
    with h5py.File(data, "w") as f:
        f["inputs"] = x.numpy()
        f["targets"] = y.numpy()
    m = torch.jit.load(pt).double()
    xb = x[:B].double() if x.is_floating_point() else x[:B]
    yb = y[:B].double() if y.is_floating_point() else y[:B]
    loss = loss_fn(loss_name, m(xb), yb)
    names = [n for n, _ in m.named_parameters()]
    grads = torch.autograd.grad(loss, [p for _, p in m.named_parameters()])
    with h5py.File(ref, "w") as f:
        f["loss"] = loss.item()
        for n, g in zip(names, grads):
            f[f"grad/{n}"] = g.numpy()
    r = subprocess.run([checker, pt, data, ref, loss_name, str(B)], capture_output=True, text=True)
    print(f"[{kind}]\n{r.stdout}{r.stderr}")
    if r.returncode != 0:
        failures += 1
print(f"{3 - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
