"""blocksharp.curvature on a user's nn.Module (pytest). Oracles: Hessian-vector products and dense
Hessians from torch.autograd in float64, and `blocksharp profile` / `structure` on the same model,
batches and seed (their profile.h5, configs and structure.h5). Environment as test_optim.py's."""
import json
import os
import subprocess
import sys
from typing import Dict, Tuple

import h5py
import numpy as np
import pytest
import torch

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
import blocksharp  # noqa: E402
from blocksharp import curvature  # noqa: E402
from hf_models import HfGpt2  # noqa: E402
from models import TinyLm, TinyMlp, loss_fn  # noqa: E402

WORK = os.environ.get("BLOCKSHARP_WORK", "/tmp/blocksharp-pytest")
CLI = os.environ.get("BLOCKSHARP", "blocksharp")


def lm_batches(n, rows=4, T=6, vocab=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, vocab, (rows, T), generator=g), torch.randint(0, vocab, (rows, T), generator=g))
            for _ in range(n)]


def autograd_hvp(model, data, v):
    params = [p for p in model.parameters() if p.requires_grad]
    loss = sum(loss_fn("ce", model(x), y) for x, y in data) / len(data)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    return torch.autograd.grad(grads, params, grad_outputs=v)


def test_hvp_equals_autograd_on_a_tied_model_with_a_frozen_tensor():
    torch.manual_seed(0)
    model = HfGpt2(vocab=16, n_positions=8, dim=8, heads=2, n_layer=1).double()
    model.transformer.ln_f.weight.requires_grad_(False)
    data = lm_batches(2)
    params = [p for p in model.parameters() if p.requires_grad]
    v = [torch.randn_like(p) for p in params]
    want = autograd_hvp(model, data, v)
    got = curvature.hvp(model, data, v)
    assert len(got) == len(params)  # tied head once, frozen ln_f out, as named_parameters() says
    for a, b in zip(got, want):
        assert (a - b).abs().max().item() < 1e-10
    flat = curvature.hvp(model, data, torch.cat([t.reshape(-1) for t in v]))
    assert torch.equal(flat, torch.cat([t.reshape(-1) for t in got]))


def test_hvp_is_of_the_model_in_eval_mode_and_leaves_the_module_as_it_was():
    """Dropout and batch norm: the curvature is the eval-mode function's (dropout off, batch norm on its
    running statistics), as PyHessian's users get with model.eval(), whatever the module's .training says;
    the module keeps its mode and running statistics."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(5, 12), torch.nn.BatchNorm1d(12), torch.nn.ReLU(),
                                torch.nn.Dropout(0.5), torch.nn.Linear(12, 3)).double()
    model[1].running_mean.normal_()
    model[1].running_var.uniform_(0.5, 2.0)
    stats = (model[1].running_mean.clone(), model[1].running_var.clone())
    data = [(torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,)))]
    v = [torch.randn_like(p) for p in model.parameters()]
    model.eval()
    want = autograd_hvp(model, data, v)
    model.train()
    got = curvature.hvp(model, data, v)
    for a, b in zip(got, want):
        assert (a - b).abs().max().item() < 1e-10
    assert model.training and torch.equal(model[1].running_mean, stats[0]) and torch.equal(model[1].running_var, stats[1])


def test_profile_equals_the_cli_profile():
    """Python's profile and `blocksharp profile` on one TorchScript file, one .h5 of the same batches
    and one seed write the same profile.h5 numbers and the same configs."""
    work = os.path.join(WORK, "profile")
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(1)
    pt, h5, cli_out, py_out = (os.path.join(work, f) for f in ("lm.pt", "lm.h5", "cli", "py"))
    script = torch.jit.script(TinyLm(vocab=16, dim=8))
    script.save(pt)
    B, n = 4, 2
    data = lm_batches(n, rows=B)
    with h5py.File(h5, "w") as f:
        f["inputs"] = torch.cat([x for x, _ in data]).numpy()
        f["targets"] = torch.cat([y for _, y in data]).numpy()
    opts = dict(topk=3, probes=6, density_runs=1, density_steps=8, block_eigs="all")
    r = subprocess.run([CLI, "profile", "--model", pt, "--data", h5, "--dtype", "float64", "--batch-size", str(B),
                        "--batches", str(n), "--noise-batches", str(n), "--seed", "5", "--dim", "8", "--n-heads", "2", "--topk", "3",
                        "--probes", "6", "--density-runs", "1", "--density-steps", "8", "--block-eigs", "all",
                        "--out", cli_out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    prof = curvature.profile(torch.jit.load(pt), data, dtype=torch.float64, seed=5, dim=8, n_heads=2, **opts)
    prof.write_configs(py_out)
    with h5py.File(os.path.join(cli_out, "profile.h5")) as a, h5py.File(os.path.join(py_out, "profile.h5")) as b:
        names = []
        a.visititems(lambda k, o: names.append(k) if isinstance(o, h5py.Dataset) else None)
        assert len(names) > 10
        for k in names:
            x, y = a[k][()], b[k][()]
            if k.endswith("seconds"):
                continue
            if isinstance(x, np.ndarray) and x.dtype.kind == "f":
                assert np.array_equal(x, y, equal_nan=True), k
            else:
                assert np.array_equal(np.asarray(x), np.asarray(y)), k
        assert np.array_equal(a["global/eigenvalues"][()], np.array(prof.eigenvalues))
    for cfg in ("adam_mini", "blockwise_lr", "sgd_sai"):
        ja, jb = (json.load(open(os.path.join(d, cfg + ".json"))) for d in (cli_out, py_out))
        assert jb["command_line"].startswith("python: blocksharp.curvature.profile(")
        for j in (ja, jb):
            for k in ("command_line", "set_id"):
                j.pop(k)
            j["model"].pop("name")  # the .pt path / the module's class
        assert ja == jb, cfg
    assert prof.blocks[0]["name"] == "wte.weight" and len(prof.kinds) > 0


def test_structure_equals_the_dense_hessian_from_autograd():
    torch.manual_seed(2)
    model = TinyMlp().double()
    g = torch.Generator().manual_seed(3)
    data = [(torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))]
    r = curvature.structure(model, data, "fc1.weight", out=os.path.join(WORK, "structure"))
    w = model.fc1.weight
    H = torch.autograd.functional.hessian(
        lambda W: loss_fn("ce", model.fc2(torch.tanh(torch.nn.functional.linear(data[0][0], W, model.fc1.bias))),
                          data[0][1]), w.detach()).reshape(w.numel(), w.numel())
    assert r["dense"] and (r["hessian"] - H).abs().max().item() < 1e-12
    total = (H * H).sum()
    for c in r["candidates"]:
        b = torch.tensor(c["block_of"])
        inside = (H * H)[b[:, None] == b[None, :]].sum()
        assert abs(c["fraction"] - (inside / total).item()) < 1e-12, c["name"]
    with h5py.File(os.path.join(WORK, "structure", "structure.h5")) as f:
        assert f["recommended"][0].decode() == r["recommended"]


def test_an_unscriptable_module_is_refused_in_one_line():
    class Unscriptable(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x, **kw):  # **kwargs are not TorchScript
            return self.lin(x)
    with pytest.raises(ValueError) as e:
        curvature.profile(Unscriptable(), [(torch.randn(2, 2), torch.randn(2, 2))], loss="mse")
    assert "torch.jit.script failed" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="loss 'hinge'|--loss 'hinge'"):
        curvature.profile(TinyMlp(), [(torch.randn(2, 6), torch.tensor([0, 1]))], loss="hinge")


def test_a_bad_vector_is_named_as_the_vector():
    """A NaN in v was reported as a non-finite Hessian-vector product of batch 0 (the model's fault,
    to a reader); a v of the wrong size names its size against the model's."""
    batches = [(torch.randn(2, 6), torch.tensor([0, 1]))]
    v = torch.randn(sum(p.numel() for p in TinyMlp().parameters()))
    v[3] = float("nan")
    with pytest.raises(ValueError, match=r"^v: non-finite entries \(NaN or infinity\)$"):
        curvature.hvp(TinyMlp(), batches, v)
    with pytest.raises(ValueError, match=r"^v: 3 entries, the model has \d+ trainable parameters$"):
        curvature.hvp(TinyMlp(), batches, torch.randn(3))
    # A list v is held to the parameters' shapes: a transposed tensor of the right size used to be taken
    # as flat values in the parameter's order (PyTorch's autograd.grad refuses it too).
    model = TinyMlp()
    vs = [torch.randn(p.shape) for p in model.parameters()]
    name, first = next(iter(model.named_parameters()))
    vs[0] = vs[0].t()
    with pytest.raises(ValueError) as e:
        curvature.hvp(model, batches, vs)
    assert str(e.value) == f"v[0]: shape {list(first.shape)[::-1]}, parameter '{name}' is {list(first.shape)}"
    with pytest.raises(ValueError, match=r"^v: 1 tensors, the model has \d+ trainable parameter tensors$"):
        curvature.hvp(model, batches, vs[:1])


def test_a_module_returning_a_tuple_or_dict_is_told_to_return_one_tensor():
    class Tup(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x) -> Tuple[torch.Tensor, torch.Tensor]:  # Hugging Face's return_dict=False shape
            return self.lin(x), x

    class Dct(Tup):
        def forward(self, x) -> Dict[str, torch.Tensor]:
            return {"logits": self.lin(x)}

    for model, kind in ((Tup(), "a tuple"), (Dct(), "a dict")):
        with pytest.raises(ValueError) as e:
            curvature.hvp(model, [(torch.randn(2, 2), torch.tensor([0, 1]))], torch.randn(6))
        msg = str(e.value)
        assert f"forward() returned {kind}; it must return one tensor" in msg and "\n" not in msg, msg
