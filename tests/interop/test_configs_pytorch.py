"""Configs seen from PyTorch: `blocksharp profile` on a scripted model writes adam_mini.json,
blockwise_lr.json and sgd_sai.json; Python's json module reads them and builds parameter groups.
Oracles: a Python transcription of the official Adam-mini v1.1.1 partition rules (block counts per
tensor), and the official SGD-SaI g-SNR (||g|| / (std(g).nan_to_num() + 1e-8)) computed by PyTorch on
rows [0, B) in float64. Usage: test_configs_pytorch.py BLOCKSHARP WORKDIR"""
import json
import os
import subprocess
import sys

import h5py
import torch

sys.path.insert(0, os.path.dirname(__file__))
from models import TinyLm, loss_fn  # noqa: E402

blocksharp, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
torch.manual_seed(0)
model = torch.jit.script(TinyLm(vocab=11, dim=8))
pt, data, out = (os.path.join(work, n) for n in ("lm.pt", "lm.h5", "out"))
model.save(pt)
x, y = torch.randint(0, 11, (12, 5)), torch.randint(0, 11, (12, 5))
with h5py.File(data, "w") as f:
    f["inputs"], f["targets"] = x.numpy(), y.numpy()
B, dim, heads = 4, 8, 2
r = subprocess.run([blocksharp, "profile", "--model", pt, "--data", data, "--dtype", "float64", "--batch-size", str(B),
                    "--dim", str(dim), "--n-heads", str(heads), "--topk", "2", "--probes", "4", "--density-runs", "1",
                    "--density-steps", "5", "--out", out], capture_output=True, text=True)
assert r.returncode == 0, r.stderr
cfg = {k: json.load(open(os.path.join(out, f"{k}.json"))) for k in ("adam_mini", "blockwise_lr", "sgd_sai")}
failures = []

# Adam-mini v1.1.1 rules, transcribed from the official optimizer.
head_numel = dim * dim // heads
def official_blocks(name, p):
    n = name.lower()
    if "bias" in n:
        return p.numel()
    if any(k in n for k in ("k_proj", "q_proj", "wq", "wk", "query", "key")):
        return p.numel() // head_numel
    if any(k in n for k in ("embed", "embd", "wte", "lm_head", "output", "final_layer", "v_proj", "wv", "value",
                            "o_proj", "wo", "attn.proj", "feed_forward", "linear", "mlp")):
        return p.shape[0]
    return 1
m = torch.jit.load(pt).double()
params = dict(m.named_parameters())
am = {p["name"]: p for p in cfg["adam_mini"]["params"]}
assert cfg["adam_mini"]["format"] == "blocksharp.adam_mini/1"
for name, p in params.items():
    e = am[name]
    if e["n_blocks"] != official_blocks(name, p) or e["shape"] != list(p.shape):
        failures.append(f"adam_mini {name}: {e['n_blocks']} blocks, official {official_blocks(name, p)}")

# Blockwise LR: PyTorch parameter groups with lr = base * multiplier.
base_lr = 1e-3
groups = [{"params": [params[n] for n in g["params"]], "lr": base_lr * g["multiplier"], "name": g["group"]}
          for g in cfg["blockwise_lr"]["groups"]]
opt = torch.optim.AdamW(groups)
if sum(len(g["params"]) for g in opt.param_groups) != len(params):
    failures.append("blockwise_lr groups do not cover every parameter exactly once")
if {g["name"]: g["lr"] for g in opt.param_groups}.get("QK") != base_lr * 8:
    failures.append("blockwise_lr: QK group should carry the paper's 8x multiplier")

# SGD-SaI g-SNR on the first batch, the official way.
loss = loss_fn("ce", m(x[:B]), y[:B])
grads = torch.autograd.grad(loss, list(params.values()))
sai = {p["name"]: p["gsnr"] for p in cfg["sgd_sai"]["params"]}
for (name, _), g in zip(params.items(), grads):
    expected = (g.norm() / (g.std().nan_to_num() + 1e-8)).item()
    if abs(sai[name] - expected) > 1e-10 * max(1.0, abs(expected)):
        failures.append(f"sgd_sai {name}: {sai[name]} vs official {expected}")

for f in failures:
    print("FAIL:", f)
failed = len({f.split()[0] for f in failures})
print(f"{3 - failed} passed, {failed} failed")
sys.exit(1 if failures else 0)
