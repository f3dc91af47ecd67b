"""Resume of a TorchScript model is bit-identical to the uninterrupted run (the presets' guarantee,
now for users' models too). A LLaMA-style .pt (RMSNorm, causal attention, SwiGLU, float64) trains
300 steps with AdamW and --checkpoint-every 25; runs stopped at steps 100, 150, 250 and 275 and
resumed to 300 must end with exactly the uninterrupted run's parameters (np.array_equal), and so must
trace.h5. Usage: test_torchscript_resume.py BLOCKSHARP WORKDIR"""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import torch

blocksharp, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
V, D, T = 24, 16, 8


class RMSNorm(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = torch.nn.Embedding(V, D)
        self.input_layernorm = RMSNorm(D)
        self.q_proj = torch.nn.Linear(D, D, bias=False)
        self.k_proj = torch.nn.Linear(D, D, bias=False)
        self.v_proj = torch.nn.Linear(D, D, bias=False)
        self.o_proj = torch.nn.Linear(D, D, bias=False)
        self.post_attention_layernorm = RMSNorm(D)
        self.gate_proj = torch.nn.Linear(D, 2 * D, bias=False)
        self.up_proj = torch.nn.Linear(D, 2 * D, bias=False)
        self.down_proj = torch.nn.Linear(2 * D, D, bias=False)
        self.norm = RMSNorm(D)
        self.lm_head = torch.nn.Linear(D, V, bias=False)

    def forward(self, x):
        h = self.embed_tokens(x)
        a = self.input_layernorm(h)
        q, k, v = self.q_proj(a), self.k_proj(a), self.v_proj(a)
        s = q @ k.transpose(-1, -2) / 4.0
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).triu(1)
        h = h + self.o_proj(torch.softmax(s.masked_fill(mask, -1e9), -1) @ v)
        m = self.post_attention_layernorm(h)
        h = h + self.down_proj(torch.nn.functional.silu(self.gate_proj(m)) * self.up_proj(m))
        return self.lm_head(self.norm(h))


torch.manual_seed(0)
model = os.path.join(work, "llama_style.pt")
torch.jit.script(Tiny().double()).save(model)
rng = np.random.RandomState(0)
data = os.path.join(work, "tokens.h5")
with h5py.File(data, "w") as f:
    f["inputs"] = rng.randint(0, V, (64, T))
    f["targets"] = rng.randint(0, V, (64, T))
common = [blocksharp, "train", "--model", model, "--data", data, "--dtype", "float64", "--batch-size", "4",
          "--steps", "300", "--optimizer", "adamw", "--lr", "3e-3", "--checkpoint-every", "25", "--threads", "1",
          "--trace-every", "50", "--trace-probes", "2", "--trace-batch-size", "2"]


def contents(d):
    out = {}
    with h5py.File(os.path.join(d, "final_params.h5")) as f:
        out.update({"params/" + k: f[k][()] for k in f.keys()})
    with h5py.File(os.path.join(d, "trace.h5")) as f:
        f.visititems(lambda k, v: out.__setitem__("trace/" + k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return out


subprocess.run(common + ["--out", os.path.join(work, "whole")], capture_output=True, check=True)
ref = contents(os.path.join(work, "whole"))
failures = []
for stop in (100, 150, 250, 275):
    d = os.path.join(work, f"stop{stop}")
    subprocess.run(common + ["--stop-at", str(stop), "--out", d], capture_output=True, check=True)
    r = subprocess.run(common + ["--resume", "--out", d], capture_output=True, text=True)
    got = contents(d) if r.returncode == 0 else {}
    diff = [k for k in ref if k not in got or not np.array_equal(np.asarray(ref[k]), np.asarray(got[k]))]
    print(("ok   " if not diff else "FAIL ") + f"stop at {stop}, resume to 300: bit-identical" +
          (f" except {diff[:4]}" if diff else "") + (f" ({r.stderr.strip()[:200]})" if r.returncode else ""))
    if diff:
        failures.append(stop)
print(f"{4 - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
