"""blocksharp.curvature: Hessian-vector products, the full curvature profile and one tensor's block
structure of your model on your batches, by the C++ engine `blocksharp profile` runs.

    prof = blocksharp.curvature.profile(model, [(x, y)], topk=3, probes=50)
    prof.eigenvalues, prof.trace, prof.blocks          # numbers; prof.blocks_frame() with pandas
    prof.write_configs("out")                          # profile.h5 + adam_mini/blockwise_lr/sgd_sai.json

`model` is an nn.Module (scripted here with torch.jit.script) or a ScriptModule; the engine runs on a
copy of it (saved and loaded as TorchScript), so your module is never modified. `batches` is any
iterable of (inputs, targets) tensors; `loss` is "ce" (token or class cross-entropy) or "mse".
Parameters are the model's named_parameters() with requires_grad: tied tensors once, frozen ones out.
The function measured is the model in eval mode (dropout off, batch norm on its running statistics),
as `blocksharp profile` measures and PyHessian's users get with model.eval(), whatever your module's
.training says; your module keeps its mode and statistics.
"""
import os
import tempfile

import torch

from . import _core


def _script(model):
    if isinstance(model, torch.jit.ScriptModule):
        return model
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected an nn.Module or a ScriptModule, not {type(model).__name__}")
    try:
        return torch.jit.script(model)
    except Exception as e:  # TorchScript's errors span many lines: keep the first
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"model {type(model).__name__}: torch.jit.script failed ({first}); script or trace it "
                         "yourself and pass the ScriptModule") from None


def _batches(batches):
    out = []
    for i, b in enumerate(batches):
        if not (isinstance(b, (tuple, list)) and len(b) == 2 and all(isinstance(t, torch.Tensor) for t in b)):
            raise TypeError(f"batches[{i}]: expected an (inputs, targets) pair of tensors")
        out.append((b[0], b[1]))
    if not out:
        raise ValueError("batches: no (inputs, targets) pair given")
    return out


def _dtype_name(model, dtype):
    if dtype is None:
        p = next(iter(model.parameters()), None)
        dtype = p.dtype if p is not None else torch.float32
    names = {torch.float32: "float32", torch.float64: "float64", "float32": "float32", "float64": "float64"}
    if dtype not in names:
        raise ValueError(f"dtype {dtype}: expected float32 or float64")
    return names[dtype]


class _Session:
    """The model (as TorchScript) and the batches, held by the C++ side."""

    def __init__(self, model, batches, loss="ce", dtype=None, seed=0, dim=0, n_heads=0, n_kv_heads=0):
        script = _script(model)
        self.batches = _batches(batches)
        with tempfile.TemporaryDirectory(prefix="blocksharp-") as d:
            path = os.path.join(d, "model.pt")
            torch.jit.save(script, path)
            self.core = _core.Session(path, type(model).__name__, self.batches, loss,
                              _dtype_name(model, dtype), int(seed), int(dim), int(n_heads), int(n_kv_heads or 0))
        self.names = self.core.parameter_names()
        self.shapes = [tuple(p.shape) for n, p in script.named_parameters() if p.requires_grad]


class Operator:
    """A curvature matrix of the mean loss over `batches` as a matrix-free operator: the graphs are built
    once and every product reuses them. `matvec(v)` takes a flat tensor over the trainable parameters
    (named_parameters() order); `n_products` counts the products; `as_scipy()` is a
    scipy.sparse.linalg.LinearOperator (float64 numpy in and out) for eigsh and friends."""

    def __init__(self, model, batches, loss="ce", dtype=None, curvature="hessian", seed=0):
        self._s = _Session(model, batches, loss, dtype, seed)
        self._op = _core.Operator(self._s.core, len(self._s.batches), curvature)
        self.shapes = self._s.shapes
        self.names = self._s.names
        self.size = self._op.size
        self.shape = (self.size, self.size)

    @property
    def n_products(self):
        return self._op.n_products

    @property
    def loss(self):
        return self._op.loss

    def matvec(self, v):
        if v.numel() != self.size:
            raise ValueError(f"v: {v.numel()} entries, the model has {self.size} trainable parameters")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):  # else it reads as the model's fault
            raise ValueError("v: non-finite entries (NaN or infinity)")
        return self._op.apply(v.reshape(-1))

    def as_scipy(self):
        import numpy as np
        from scipy.sparse.linalg import LinearOperator

        def mv(x):
            return self.matvec(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).reshape(-1)).to(
                torch.float64).numpy()
        return LinearOperator(self.shape, matvec=mv, dtype=np.float64)


def hvp(model, batches, v, loss="ce", dtype=None, curvature="hessian", seed=0):
    """H v for the Hessian of the mean loss over `batches`. `v` is one flat tensor over the trainable
    parameters (named_parameters() order) or a list with one tensor per parameter; the result has
    the same form, in the computation's dtype. curvature="ggn", "fisher" (labels drawn from the model
    with `seed`) or "empirical-fisher" multiplies by that matrix instead of the Hessian. For many
    products build an Operator once."""
    op = Operator(model, batches, loss, dtype, curvature, seed)
    if not isinstance(v, torch.Tensor):
        v = list(v)
        if len(v) != len(op.shapes):
            raise ValueError(f"v: {len(v)} tensors, the model has {len(op.shapes)} trainable parameter tensors")
        for i, (t, sh, name) in enumerate(zip(v, op.shapes, op.names)):  # a transposed v[i] is a mistake
            if tuple(t.shape) != tuple(sh):
                raise ValueError(f"v[{i}]: shape {list(t.shape)}, parameter '{name}' is {list(sh)}")
    flat = v if isinstance(v, torch.Tensor) else torch.cat([t.reshape(-1) for t in v])
    out = op.matvec(flat.reshape(-1))
    if isinstance(v, torch.Tensor):
        return out.reshape(v.shape)
    parts, at = [], 0
    for sh in op.shapes:
        k = int(torch.Size(sh).numel())
        parts.append(out[at:at + k].reshape(sh))
        at += k
    return parts


class Profile:
    """What `blocksharp profile` measures, as Python values. `blocks` and `kinds` are lists of dicts
    (one per measured block / block kind); `blocks_frame()` and `kinds_frame()` give pandas
    DataFrames when pandas is installed."""

    def __init__(self, result):
        self._result = result
        d = result.as_dict()
        self.loss = d["loss"]
        self.eigenvalues = d["eigen"]["eigenvalues"]
        self.residuals = d["eigen"]["residuals"]
        self.eig_status = d["eigen"]["status"]
        self.eig_products = d["eigen"]["products"]
        self.error_bounds = d["eigen"]["error_bounds"]  # with eig_accuracy: residual^2/gap per eigenvalue
        self.trace, self.trace_stderr = d["trace"], d["trace_stderr"]
        self.density = d["density"]
        self.blocks, self.kinds = d["blocks"], d["kinds"]
        self.noise = d["noise"]  # gradient noise scale: scale (B_simple, rows), tr_sigma, g_sq, batches, rows
        self.n_hvp, self.seconds = d["n_hvp"], d["seconds"]

    def as_dict(self):
        return self._result.as_dict()

    def blocks_frame(self):
        import pandas as pd
        return pd.DataFrame(self.blocks)

    def kinds_frame(self):
        import pandas as pd
        return pd.DataFrame(self.kinds)

    def write_configs(self, out, **options):
        """Writes out/profile.h5, adam_mini.json, blockwise_lr.json and sgd_sai.json together, as
        `blocksharp profile --out` does. Options as the CLI's: adam_mini ("rules", "measured",
        "slices"), lr_policy ("paper", "inverse-sharpness"), lr_exponent, lr_min_multiplier,
        lr_max_multiplier, structure_threshold, group_patterns, gsnr_batches."""
        self._result.write(os.fspath(out), options)

    def __repr__(self):
        top = ", ".join(f"{x:.6g}" for x in self.eigenvalues)
        return f"Profile(loss={self.loss:.6g}, eigenvalues=[{top}], trace={self.trace:.6g}, blocks={len(self.blocks)})"


def profile(model, batches, loss="ce", dtype=None, seed=0, dim=0, n_heads=0, n_kv_heads=0, **options):
    """Top eigenvalues (Lanczos), Hutchinson trace, spectral density, per-block and per-kind sharpness
    and g-SNR of the loss on `batches` (all of them unless batches=N). Options as the CLI's: topk,
    probes, batches, method ("lanczos", "power"), which ("LA", "SA", "LM"), tol, block_eigs ("none",
    "kinds", "all"), trace_estimator ("hutchinson", "hutch++"), density_runs, density_steps, reorth,
    eig_accuracy (the wanted relative eigenvalue accuracy, instead of tol), gn_samples, keep_graphs, curvature ("hessian", "ggn", "fisher", "empirical-fisher": the matrix every
    number is of), noise_batches (batch gradients for the gradient noise scale; default: all the batches
    given when there are at least 2, else 0). dim / n_heads are the attention sizes Adam-mini's rules need."""
    s = _Session(model, batches, loss, dtype, seed, dim, n_heads, n_kv_heads)
    options.setdefault("batches", len(s.batches))
    options.setdefault("noise_batches", len(s.batches) if len(s.batches) >= 2 else 0)
    args = ", ".join([f"model={type(model).__name__}", f"batches={len(s.batches)}", f"loss={loss!r}", f"seed={seed}",
                      f"dim={dim}", f"n_heads={n_heads}"] + [f"{k}={v!r}" for k, v in sorted(options.items())])
    _core.set_command_line(f"python: blocksharp.curvature.profile({args})")
    return Profile(_core.profile(s.core, options))


def structure(model, batches, param, loss="ce", dtype=None, seed=0, dim=0, n_heads=0, threshold=0.9,
              max_dense=4096, per_pass=1, probes=30, out=None, curvature="hessian"):
    """The Hessian block of `param` (a name, or a list of names for a set) scored against candidate
    partitions (whole, per-head, per-row, per-column, per-element): a dict with "candidates" (name,
    n_blocks, fraction of the squared Frobenius mass inside the diagonal blocks), "recommended" and,
    when formed densely, "hessian" (the chosen curvature's block). With out=DIR also writes
    DIR/structure.h5 as the CLI does."""
    s = _Session(model, batches, loss, dtype, seed, dim, n_heads)
    params = [param] if isinstance(param, str) else list(param)
    return _core.structure(s.core, params, float(threshold), int(max_dense), int(per_pass), int(probes),
                 len(s.batches), "" if out is None else os.fspath(out), curvature)
