"""`bench train`'s PyTorch side (tools/experiments/bench_train_pytorch.py) computes the function
blocksharp's models compute, for both presets the benchmark runs. Oracle: blocksharp's own loss on the
same weights and tokens. blocksharp trains the preset (2 layers, 20 steps at lr 1e-2, so the logits are
far from uniform and the loss depends on every part of the model) and writes its parameters
(final_params.h5) and a Hugging Face export; the mirror takes the parameters by name (the names must be
the same set) and its loss on held tokens must equal `profile --model hf:...`'s to 4e-7 relative
(float32 sums in another order: 0-1e-7 seen; GELU's exact form in place of the tanh one moves
gpt2-small-cpu's loss by 1.5e-6, a RoPE rotated the wrong way llama-small-cpu's by 1e-3).
Usage: test_bench_train_mirror.py BLOCKSHARP WORKDIR MIRROR_SCRIPT_DIR"""
import os
import subprocess
import sys

import h5py
import torch
import torch.nn.functional as F

blocksharp, work, scripts = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, scripts)
import bench_train_pytorch as mirror  # noqa: E402

os.makedirs(work, exist_ok=True)
B, T = 2, 32
g = torch.Generator().manual_seed(5)
x, y = torch.randint(0, 256, (B, T), generator=g), torch.randint(0, 256, (B, T), generator=g)
data = os.path.join(work, "tokens.h5")
with h5py.File(data, "w") as f:
    f["inputs"], f["targets"] = x.numpy(), y.numpy()


def run(args):
    r = subprocess.run([blocksharp, *args], capture_output=True, text=True)
    assert r.returncode == 0, (args, r.stderr)


for preset in ("gpt2-small-cpu", "llama-small-cpu"):
    d = os.path.join(work, preset)
    run(["train", "--model", preset, "--set", "n_layer=2", "--steps", "20", "--lr", "1e-2", "--batch-size", "2",
         "--seq-len", str(T), "--eval-batches", "0", "--threads", "1", "--export-hf", os.path.join(d, "hf"), "--out",
         os.path.join(d, "run")])
    run(["profile", "--model", "hf:" + os.path.join(d, "hf"), "--data", data, "--batch-size", str(B), "--topk", "1",
         "--probes", "2", "--density-runs", "0", "--block-eigs", "none", "--gn-samples", "0", "--threads", "1",
         "--out", os.path.join(d, "profile")])
    with h5py.File(os.path.join(d, "profile", "profile.h5")) as f:
        ours = float(f["/global/loss"][()])

    c = dict(mirror.PRESETS[preset], n_layer=2)
    model = mirror.Gpt2(c) if c["family"] == "gpt2" else mirror.Llama(c)
    state = {}
    with h5py.File(os.path.join(d, "run", "final_params.h5")) as f:
        f.visititems(lambda k, v: state.__setitem__(k, torch.from_numpy(v[()])) if isinstance(v, h5py.Dataset) else None)
    params = dict(model.named_parameters())
    assert sorted(params) == sorted(state), (preset, set(params) ^ set(state))
    with torch.no_grad():
        for name, p in params.items():
            assert p.shape == state[name].shape, (preset, name, p.shape, state[name].shape)
            p.copy_(state[name])
        logits = model(x)
        theirs = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1)).item()
    assert abs(ours - 5.545) > 1.0, (preset, ours)  # trained: far from ln 256, the uniform logits' loss
    assert abs(theirs - ours) <= 4e-7 * abs(ours), (preset, theirs, ours)
    print(f"{preset}: the mirror's loss {theirs:.7f} against blocksharp's {ours:.7f} on the same weights")
