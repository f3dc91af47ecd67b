"""GGN, Fisher and empirical-Fisher operators (curvature="ggn" | "fisher" | "empirical-fisher") on tiny
float64 models (pytest). Oracles, all from torch.autograd and independent of blocksharp's products:
the dense GGN J^T H_L J from the full Jacobian of the outputs and the closed-form H_L; the empirical
Fisher from per-row loss gradients; the Hessian itself for a linear model with MSE (where the GGN is
the Hessian); the GGN as the Fisher's expectation (a statistical test). Environment as test_optim.py's."""
import os
import subprocess
import sys

import h5py
import pytest
import torch

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
from blocksharp import curvature  # noqa: E402
from hf_models import HfGpt2  # noqa: E402
from models import TinyLm, TinyMlp, loss_fn  # noqa: E402

WORK = os.environ.get("BLOCKSHARP_WORK", "/tmp/blocksharp-pytest")
CLI = os.environ.get("BLOCKSHARP", "blocksharp")


def lm_batches(n, rows=3, T=4, vocab=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, vocab, (rows, T), generator=g), torch.randint(0, vocab, (rows, T), generator=g))
            for _ in range(n)]


def mse_batches(n, rows=5, d_in=6, d_out=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(rows, d_in, generator=g, dtype=torch.float64),
             torch.randn(rows, d_out, generator=g, dtype=torch.float64)) for _ in range(n)]


def trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def flat(grads, params):
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def jacobian_rows(model, x):
    """The outputs z (detached) and J [rows, width, n]: d z_n / d theta, one backward per output entry."""
    params = trainable(model)
    z = model(x)
    width = 1 if z.dim() <= 1 else z.size(-1)
    zf = z.reshape(-1)
    J = torch.stack([flat(torch.autograd.grad(zf[i], params, retain_graph=True, allow_unused=True), params)
                     for i in range(zf.numel())])
    return z.detach().reshape(-1, width), J.reshape(-1, width, J.size(-1))


def dense_ggn(model, data, loss):
    """mean over batches of (1/N) sum_n J_n^T H_n J_n with H_n the row loss's Hessian in closed form."""
    G = 0
    for x, y in data:
        z, J = jacobian_rows(model, x)
        N, D = z.shape
        if loss == "ce":
            p = torch.softmax(z, -1)
            H = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        else:
            H = (2.0 / D) * torch.eye(D, dtype=z.dtype).expand(N, D, D)
        G = G + torch.einsum("nai,nab,nbj->ij", J, H, J) / N
    return G / len(data)


def dense_empirical_fisher(model, data, loss):
    """mean over batches of (1/N) sum_n g_n g_n^T, g_n the gradient of row n's own loss (autograd)."""
    params = trainable(model)
    F = 0
    for x, y in data:
        z = model(x)
        D = 1 if z.dim() <= 1 else z.size(-1)
        zr, yr = z.reshape(-1, D), (y.reshape(-1) if loss == "ce" else y.reshape(-1, D))
        N = zr.size(0)
        for n in range(N):
            ln = (torch.nn.functional.cross_entropy(zr[n:n + 1], yr[n:n + 1]) if loss == "ce"
                  else ((zr[n] - yr[n]) ** 2).mean())
            g = flat(torch.autograd.grad(ln, params, retain_graph=True, allow_unused=True), params)
            F = F + torch.outer(g, g) / N
    return F / len(data)


def dense_hessian(model, data, loss):
    params = trainable(model)
    l = sum(loss_fn(loss, model(x), y) for x, y in data) / len(data)
    g = flat(torch.autograd.grad(l, params, create_graph=True), params)
    return torch.stack([flat(torch.autograd.grad(g[i], params, retain_graph=True, allow_unused=True), params)
                        for i in range(g.numel())])


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def tied_gpt2():
    torch.manual_seed(0)
    model = HfGpt2(vocab=6, n_positions=4, dim=4, heads=2, n_layer=1).double()
    model.transformer.ln_f.weight.requires_grad_(False)  # frozen: left out, as named_parameters() says
    return model


@pytest.mark.parametrize("kind", ["ggn", "empirical-fisher"])
def test_products_equal_the_dense_matrix_on_a_tied_gpt2(kind):
    model, data = tied_gpt2(), lm_batches(2)
    M = dense_ggn(model, data, "ce") if kind == "ggn" else dense_empirical_fisher(model, data, "ce")
    assert torch.allclose(M, M.T, atol=1e-14)
    torch.manual_seed(1)
    for _ in range(2):
        v = torch.randn(M.size(0), dtype=torch.float64)
        assert rel(curvature.hvp(model, data, v, curvature=kind), M @ v) < 1e-10


@pytest.mark.parametrize("kind", ["ggn", "empirical-fisher"])
def test_mse_products_equal_the_dense_matrix(kind):
    torch.manual_seed(2)
    model, data = TinyMlp().double(), mse_batches(2)
    M = dense_ggn(model, data, "mse") if kind == "ggn" else dense_empirical_fisher(model, data, "mse")
    v = torch.randn(M.size(0), dtype=torch.float64)
    assert rel(curvature.hvp(model, data, v, loss="mse", curvature=kind), M @ v) < 1e-10


def test_ggn_is_the_hessian_for_a_linear_model_with_mse():
    torch.manual_seed(3)
    model, data = torch.nn.Linear(6, 3).double(), mse_batches(2)
    H = dense_hessian(model, data, "mse")
    v = torch.randn(H.size(0), dtype=torch.float64)
    ggn = curvature.hvp(model, data, v, loss="mse", curvature="ggn")
    hess = curvature.hvp(model, data, v, loss="mse")
    assert rel(ggn, H @ v) < 1e-12 and rel(hess, H @ v) < 1e-12


def test_ggn_eigenvalues_traces_and_block_sharpness_equal_the_dense_ggn():
    """profile(curvature="ggn"): top eigenvalues (Lanczos) to 1e-8, and with Hutch++ sketching the whole
    space (products >= 3n) every block's trace exactly; each block's lambda_max from its dense block."""
    torch.manual_seed(4)
    model, data = TinyLm(vocab=6, dim=4).double(), lm_batches(1)
    G = dense_ggn(model, data, "ce")
    n = G.size(0)
    want = torch.linalg.eigvalsh(G).flip(0)
    prof = curvature.profile(model, data, dtype=torch.float64, curvature="ggn", topk=3, probes=3 * n + 3,
                             trace_estimator="hutch++", density_runs=1, density_steps=10, block_eigs="all")
    for got, w in zip(prof.eigenvalues, want[:3].tolist()):
        assert abs(got - w) < 1e-8 * want[0].item()
    assert abs(prof.trace - G.trace().item()) < 1e-9 * G.trace().item()
    at = 0
    for b in prof.blocks:
        sub = G[at:at + b["numel"], at:at + b["numel"]]
        assert abs(b["trace"] - sub.trace().item()) < 1e-9 * G.trace().item(), b["name"]
        assert abs(b["lambda_max"] - torch.linalg.eigvalsh(sub)[-1].item()) < 1e-8 * want[0].item(), b["name"]
        at += b["numel"]
    assert at == n
    low = curvature.profile(model, data, dtype=torch.float64, curvature="ggn", topk=1, which="SA", probes=2,
                            density_runs=0, block_eigs="none")
    assert abs(low.eigenvalues[0] - want[-1].item()) < 1e-8 * want[0].item() and want[-1] > -1e-12  # PSD


def test_fisher_expectation_is_the_ggn():
    """For cross-entropy E_y[s s^T] = diag(p) - p p^T, so the Fisher's mean over label draws is the GGN:
    v^T F v over independent draws (each call's batch copies draw their own labels) is within 4
    standard errors of v^T G v, and draws with one seed repeat exactly."""
    model, data = tied_gpt2(), lm_batches(1)
    G = dense_ggn(model, data, "ce")
    torch.manual_seed(5)
    v = torch.randn(G.size(0), dtype=torch.float64)
    want = (v @ G @ v).item()
    copies = data * 8
    xs = torch.tensor([(v @ curvature.hvp(model, copies, v, curvature="fisher", seed=s)).item() for s in range(20)],
                      dtype=torch.float64)
    mean, se = xs.mean().item(), (xs.std() / len(xs) ** 0.5).item()
    assert abs(mean - want) < 4 * se, (mean, want, se)
    assert xs.std().item() > 0  # the draws differ
    again = (v @ curvature.hvp(model, copies, v, curvature="fisher", seed=3)).item()
    assert again == xs[3].item()


def test_fisher_draws_do_not_depend_on_keeping_graphs():
    model, data = tied_gpt2(), lm_batches(2)
    opts = dict(dtype=torch.float64, curvature="fisher", seed=7, topk=2, probes=4, density_runs=0, block_eigs="none")
    kept = curvature.profile(model, data, keep_graphs=True, **opts)
    rebuilt = curvature.profile(model, data, keep_graphs=False, **opts)
    assert kept.eigenvalues == rebuilt.eigenvalues and kept.trace == rebuilt.trace


def test_structure_of_a_ggn_block_is_the_dense_ggn_block():
    model, data = tied_gpt2(), lm_batches(1)
    G = dense_ggn(model, data, "ce")
    names = [k for k, p in model.named_parameters() if p.requires_grad]
    at = sum(p.numel() for k, p in model.named_parameters() if p.requires_grad and names.index(k) <
             names.index("transformer.h.0.attn.c_attn.weight"))
    numel = model.transformer.h[0].attn.c_attn.weight.numel()
    r = curvature.structure(model, data, "transformer.h.0.attn.c_attn.weight", dtype=torch.float64, curvature="ggn")
    sub = G[at:at + numel, at:at + numel]
    assert (r["hessian"] - sub).abs().max().item() < 1e-12 * sub.abs().max().item()


def test_cli_records_the_curvature_in_its_files():
    """--curvature on profile and structure, --trace-curvature on train: the files say which matrix."""
    work = os.path.join(WORK, "cli_curvature")
    common = ["--model", "gpt2-tiny", "--data", "brown", "--batch-size", "2", "--seq-len", "8", "--seed", "1"]
    runs = {
        "profile": ["profile", *common, "--curvature", "ggn", "--topk", "2", "--probes", "3", "--density-runs", "0",
                    "--block-eigs", "none", "--out", os.path.join(work, "profile")],
        "structure": ["structure", *common, "--curvature", "empirical-fisher", "--param", "ln_f.weight",
                      "--out", os.path.join(work, "structure")],
        "train": ["train", *common, "--steps", "2", "--trace-every", "1", "--trace-curvature", "fisher",
                  "--out", os.path.join(work, "train")],
    }
    files = {"profile": "profile/profile.h5", "structure": "structure/structure.h5", "train": "train/trace.h5"}
    want = {"profile": "ggn", "structure": "empirical-fisher", "train": "fisher"}
    for name, args in runs.items():
        r = subprocess.run([CLI, *args], capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)
        with h5py.File(os.path.join(work, files[name])) as f:
            got = f.attrs["curvature"]
            assert (got.decode() if isinstance(got, bytes) else got) == want[name]
    r = subprocess.run([CLI, "profile", *common, "--curvature", "gauss"], capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "--curvature" in r.stderr and "ggn" in r.stderr


def test_gradient_noise_scale_of_linear_regression_in_closed_form():
    """B_simple = tr(Sigma)/|G|^2 (McCandlish et al. 2018) from the K batch gradients of a linear model
    with MSE, each written in closed form (2/(bD)) R^T X and (2/(bD)) sum R, R = X W^T + c - Y:
    globally, per tensor and per kind, against profile(noise_batches=K)."""
    torch.manual_seed(6)
    model = torch.nn.Linear(6, 3).double()
    K, b = 5, 4
    data = mse_batches(K, rows=b)
    W, c = model.weight.detach(), model.bias.detach()
    grads = []
    for x, y in data:
        R = x @ W.T + c - y
        scale = 2.0 / (b * 3)
        grads.append(torch.cat([(scale * R.T @ x).reshape(-1), scale * R.sum(0)]))
    G = torch.stack(grads)

    def b_simple(cols):
        var = G[:, cols].var(0, unbiased=True).sum().item()
        g_sq = (G[:, cols].mean(0) ** 2).sum().item() - var / K
        return b * var / g_sq

    prof = curvature.profile(model, data, loss="mse", dtype=torch.float64, topk=1, probes=2, density_runs=0,
                             block_eigs="none")
    assert prof.noise["batches"] == K and prof.noise["rows"] == b
    assert abs(prof.noise["scale"] / b_simple(slice(0, 21)) - 1) < 1e-10
    by_name = {blk["name"]: blk["noise_scale"] for blk in prof.blocks}
    assert abs(by_name["weight"] / b_simple(slice(0, 18)) - 1) < 1e-10
    assert abs(by_name["bias"] / b_simple(slice(18, 21)) - 1) < 1e-10
    kinds = {k["kind"]: k["noise_scale"] for k in prof.kinds}
    assert abs(kinds["Bias"] / b_simple(slice(18, 21)) - 1) < 1e-10
    one = curvature.profile(model, data[:1], loss="mse", dtype=torch.float64, topk=1, probes=2, density_runs=0,
                            block_eigs="none")
    assert one.noise["batches"] == 0 and one.noise["scale"] != one.noise["scale"]  # one batch: not measured (NaN)


def test_eig_accuracy_meets_its_bound_in_no_more_products_than_eigsh():
    """--eig-accuracy 1e-6 (top 5, Lanczos): every eigenvalue within 1e-6 (relative) of the dense
    eigendecomposition and within its reported bound residual^2/gap; products counted against SciPy's
    ARPACK eigsh at tol=1e-6 on the same operator, same basis size (20), printed for the record."""
    from scipy.sparse.linalg import eigsh
    import numpy as np
    torch.manual_seed(8)
    model = HfGpt2(vocab=16, n_positions=8, dim=12, heads=2, n_layer=1).double()
    data = lm_batches(1, rows=4, T=8, vocab=16)
    op = curvature.Operator(model, data, dtype=torch.float64)
    n = op.size
    H = torch.stack([op.matvec(e) for e in torch.eye(n, dtype=torch.float64)])
    want = torch.linalg.eigvalsh(0.5 * (H + H.T)).flip(0)[:5].tolist()
    prof = curvature.profile(model, data, dtype=torch.float64, topk=5, eig_accuracy=1e-6, probes=2, density_runs=0,
                             block_eigs="none", noise_batches=0)
    for got, w, bound in zip(prof.eigenvalues, want, prof.error_bounds):
        assert abs(got - w) <= 1e-6 * abs(w), (got, w)
        assert abs(got - w) <= bound + 1e-12 * abs(w), (got, w, bound)
    arpack = curvature.Operator(model, data, dtype=torch.float64)
    vals = eigsh(arpack.as_scipy(), k=5, which="LA", tol=1e-6, ncv=20, v0=np.ones(n))[0]
    assert max(abs(a - b) / abs(b) for a, b in zip(sorted(vals, reverse=True), want)) < 1e-6
    tight = curvature.profile(model, data, dtype=torch.float64, topk=5, probes=2, density_runs=0, block_eigs="none",
                              noise_batches=0)
    print(f"\ntop-5 to 1e-6 on {n} parameters: --eig-accuracy {prof.eig_products} products, eigsh(tol=1e-6) "
          f"{arpack.n_products}, --tol 1e-10 (default) {tight.eig_products}")
    assert prof.eig_products <= arpack.n_products
