"""A Hugging Face-shaped GPT-2 (Conv1D, fused c_attn, lm_head tied to transformer.wte, float64) seen by
blocksharp exactly as PyTorch's named_parameters() lists it: the tied tensor once, frozen tensors out.
Oracles: the dense Hessian from torch.autograd.functional.hessian over named_parameters() (top-5 to
1e-8, trace within 5 standard errors), the kind rules' HF names, and torch.optim.AdamW plus float64
transcriptions of Adam-mini v1.1.1 and SGD-SaI trained on the same batches (to 1e-10).
Usage: test_tied_models.py BLOCKSHARP WORKDIR"""
import json
import os
import subprocess
import sys

import h5py
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from hf_models import HfGpt2, hf_gpt2_functional  # noqa: E402

blocksharp, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
torch.manual_seed(3)
VOCAB, DIM, HEADS, T, ROWS, B = 16, 8, 2, 6, 8, 4
x, y = torch.randint(0, VOCAB, (ROWS, T)), torch.randint(0, VOCAB, (ROWS, T))
data = os.path.join(work, "tokens.h5")
with h5py.File(data, "w") as f:
    f["inputs"], f["targets"] = x.numpy(), y.numpy()
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(args):
    r = subprocess.run([blocksharp] + args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"blocksharp {' '.join(args)} failed: {r.stderr}")
    return r.stdout


def ce(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def make_model(freeze=()):
    torch.manual_seed(5)
    m = HfGpt2(vocab=VOCAB, n_positions=8, dim=DIM, heads=HEADS, n_layer=1).double()
    for n, p in m.named_parameters():
        if n in freeze:
            p.requires_grad_(False)
    return m


def dense_hessian(m):
    """Hessian of the batch-[0,B) loss over the trainable tensors named_parameters() lists."""
    named = [(n, p) for n, p in m.named_parameters() if p.requires_grad]
    frozen = {n: p.detach() for n, p in m.named_parameters() if not p.requires_grad}
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in named])

    def loss_of(flat):
        parts, off = {}, 0
        for n, p in named:
            parts[n] = flat[off:off + p.numel()].view_as(p)
            off += p.numel()
        return ce(hf_gpt2_functional(parts, x[:B], HEADS, 1, frozen), y[:B])

    with torch.no_grad():
        gap = (loss_of(flat0) - ce(m(x[:B]), y[:B])).abs().item()
    check(gap < 1e-13, f"functional oracle equals the module's loss (gap {gap:.2g})")
    return torch.autograd.functional.hessian(loss_of, flat0), named


def profile(m, tag):
    pt, out = os.path.join(work, f"{tag}.pt"), os.path.join(work, tag)
    torch.jit.script(m).save(pt)
    stdout = run(["profile", "--model", pt, "--data", data, "--dtype", "float64", "--batch-size", str(B),
                  "--dim", str(DIM), "--n-heads", str(HEADS), "--topk", "5", "--probes", "200",
                  "--density-runs", "0", "--out", out])
    return pt, out, stdout


# 1. Tied: one parameter, the first name wins, the alias recorded.
model = make_model()
H, named = dense_hessian(model)
n_unique = sum(p.numel() for _, p in named)
check(n_unique == sum(p.numel() for p in model.parameters()), "PyTorch lists the tied tensor once")
pt, out, stdout = profile(model, "tied")
exact = torch.linalg.eigvalsh(H).flip(0)[:5]
with h5py.File(os.path.join(out, "profile.h5")) as f:
    got = torch.from_numpy(f["/global/eigenvalues"][()])
    numel = int(f["/global/numel"][()])
    aliases = [s.decode() for s in f["/model/aliases"][()]]
    alias_of = [s.decode() for s in f["/model/alias_of"][()]]
    names = [s.decode() for s in f["/blocks/name"][()]]
    tensors = [s.decode() for s in f["/blocks/tensor"][()]]
    kinds = dict(zip(names, (s.decode() for s in f["/blocks/kind"][()])))
    block_tr = dict(zip(names, f["/blocks/trace"][()]))
    block_se = dict(zip(names, f["/blocks/trace_stderr"][()]))
    kind_lmax = dict(zip((s.decode() for s in f["/kinds/name"][()]), f["/kinds/lambda_max"][()]))
    trace, trace_se = f["/global/trace"][()], f["/global/trace_stderr"][()]
check(numel == n_unique, f"profile counts {numel} parameters, named_parameters() {n_unique}")
check(f"({n_unique} parameters)" in stdout, "the printed parameter count is named_parameters()'")
err = ((got - exact).abs().max() / exact.abs().max()).item()
check(err < 1e-8, f"top-5 eigenvalues of the tied model vs the dense Hessian: relative error {err:.2g}")
tr_err = abs(trace - H.trace().item())
check(tr_err <= 5 * trace_se + 1e-12, f"trace {trace:.6g} vs dense {H.trace().item():.6g} (stderr {trace_se:.2g})")
check(aliases == ["lm_head.weight"] and alias_of == ["transformer.wte.weight"], f"alias recorded: {aliases} -> {alias_of}")
check(list(dict.fromkeys(tensors)) == [n for n, _ in named], "blocks follow named_parameters() in order")
# The fused c_attn (Conv1D, [in, 3 out]) is measured as its q, k, v column slices.
offsets, off = {}, 0
for n, p in named:
    offsets[n] = off
    off += p.numel()
ca = "transformer.h.0.attn.c_attn.weight"
cols = torch.arange(3 * DIM).view(1, -1) + torch.arange(DIM).view(-1, 1) * 3 * DIM + offsets[ca]
slice_idx = {lab: cols[:, j * DIM:(j + 1) * DIM].reshape(-1) for j, lab in enumerate("qkv")}
check([n for n in names if n.startswith(ca)] == [ca + "[q]", ca + "[k]", ca + "[v]"], "c_attn is three blocks, [q] [k] [v]")
for lab in "qkv":
    exact_tr = H[slice_idx[lab]][:, slice_idx[lab]].trace().item()
    got_tr, se = block_tr[f"{ca}[{lab}]"], block_se[f"{ca}[{lab}]"]
    check(abs(got_tr - exact_tr) <= 5 * se + 1e-12, f"c_attn[{lab}] trace {got_tr:.5g} vs dense {exact_tr:.5g} (stderr {se:.2g})")
qk = torch.cat([slice_idx["q"], slice_idx["k"]])
qk_exact = torch.linalg.eigvalsh(H[qk][:, qk])[-1].item()
check(abs(kind_lmax["QK"] - qk_exact) <= 1e-8 * abs(qk_exact), f"QK lambda_max over the q and k slices {kind_lmax['QK']:.10g} vs dense {qk_exact:.10g}")
vo = torch.cat([slice_idx["v"]] + [torch.arange(offsets[n], offsets[n] + p.numel()) for n, p in named if n.endswith("attn.c_proj.weight")])
vo_exact = torch.linalg.eigvalsh(H[vo][:, vo])[-1].item()
check(abs(kind_lmax["VO"] - vo_exact) <= 1e-8 * abs(vo_exact), f"VO lambda_max over v and c_proj {kind_lmax['VO']:.10g} vs dense {vo_exact:.10g}")
expected_kinds = {"transformer.wte.weight": "Emb", ca + "[q]": "QK", ca + "[k]": "QK", ca + "[v]": "VO",
                  "transformer.h.0.attn.c_proj.weight": "VO", "transformer.h.0.mlp.c_fc.weight": "FFN",
                  "transformer.h.0.mlp.c_proj.weight": "FFN", "transformer.h.0.mlp.c_proj.bias": "Bias",
                  "transformer.h.0.ln_2.weight": "Norm"}
check(all(kinds[n] == k for n, k in expected_kinds.items()), f"HF GPT-2 kinds: {kinds}")
cfg = json.load(open(os.path.join(out, "adam_mini.json")))
check(cfg["model"]["aliases"] == {"lm_head.weight": "transformer.wte.weight"}, "the alias is recorded in the configs")
check([p["name"] for p in cfg["params"]] == [n for n, _ in named], "adam_mini.json lists each tensor once")

# 1b. A machine too small for the default Lanczos basis (20 float64 vectors): the basis is cut to what
# fits (9 vectors here, budget played by BLOCKSHARP_MEMORY_BUDGET), the answer is the same.
budget = int((8 + 9.5) * 8 * n_unique / 0.85)
r = subprocess.run([blocksharp, "profile", "--model", pt, "--data", data, "--dtype", "float64", "--batch-size", str(B),
                    "--dim", str(DIM), "--n-heads", str(HEADS), "--topk", "5", "--probes", "4", "--density-runs", "1",
                    "--density-steps", "20", "--out", os.path.join(work, "small-machine")],
                   capture_output=True, text=True, env={**os.environ, "BLOCKSHARP_MEMORY_BUDGET": str(budget)})
check(r.returncode == 0 and "cut from 20 to 9 vectors" in r.stderr and "without reorthogonalisation" in r.stderr,
      f"small machine: basis cut and density unreorthogonalised, said on stderr: {r.stderr.strip()}")
if r.returncode == 0:
    with h5py.File(os.path.join(work, "small-machine", "profile.h5")) as f:
        small = torch.from_numpy(f["/global/eigenvalues"][()])
        reorth = f.attrs["density_reorth"]
    err_small = ((small - exact).abs().max() / exact.abs().max()).item()
    check(err_small < 1e-8, f"top-5 with a 9-vector basis vs the dense Hessian: relative error {err_small:.2g}")
    check(reorth in ("false", b"false"), "profile.h5 records the density ran without reorthogonalisation")

# 2. Frozen: left out of every figure, and reported.
frozen_model = make_model(freeze=("transformer.wpe.weight",))
Hf, named_f = dense_hessian(frozen_model)
_, out_f, stdout_f = profile(frozen_model, "frozen")
with h5py.File(os.path.join(out_f, "profile.h5")) as f:
    got_f = torch.from_numpy(f["/global/eigenvalues"][()])
    numel_f = int(f["/global/numel"][()])
    frozen_names = [s.decode() for s in f["/model/frozen"][()]]
exact_f = torch.linalg.eigvalsh(Hf).flip(0)[:5]
err_f = ((got_f - exact_f).abs().max() / exact_f.abs().max()).item()
check(numel_f == sum(p.numel() for _, p in named_f), f"frozen wpe left out: {numel_f} parameters")
check(frozen_names == ["transformer.wpe.weight"], f"frozen tensors reported: {frozen_names}")
check(err_f < 1e-8, f"top-5 eigenvalues with a frozen tensor vs the dense Hessian: relative error {err_f:.2g}")

# 3. Training the tied model: one state and one update for the shared tensor.
STEPS, LR, WD, EPS = 5, 1e-2, 0.1, 1e-8
am_blocks = {p["name"]: (p["block_size"], p["weight_decay"]) for p in cfg["params"]}


def batches():
    for i in range(STEPS):
        idx = torch.tensor([(i * B + r) % ROWS for r in range(B)])
        yield x[idx], y[idx]


def reference(kind):
    m = make_model()
    params = dict(m.named_parameters())
    if kind == "adamw":
        opt = torch.optim.AdamW(params.values(), lr=LR, betas=(0.9, 0.95), eps=EPS, weight_decay=WD)
    state = {n: {} for n in params}
    for t, (xb, yb) in enumerate(batches(), start=1):
        m.zero_grad()
        ce(m(xb), yb).backward()
        if kind == "adamw":
            opt.step()
            continue
        with torch.no_grad():
            for n, p in params.items():
                g, s = p.grad, state[n]
                if kind == "adam-mini":  # Adam-mini v1.1.1: one second moment per block
                    size, decay = am_blocks[n]
                    s.setdefault("m", torch.zeros_like(p))
                    s.setdefault("v", torch.zeros(p.numel() // size, dtype=p.dtype))
                    s["v"].mul_(0.95).add_(0.05 * g.reshape(-1, size).pow(2).mean(1))
                    if decay:
                        p.mul_(1 - LR * WD)
                    s["m"].mul_(0.9).add_(0.1 * g)
                    denom = (s["v"].sqrt() / (1 - 0.95 ** t) ** 0.5 + EPS).repeat_interleave(size).view_as(p)
                    p.sub_(LR * (s["m"] / (1 - 0.9 ** t)) / denom)
                else:  # SGD-SaI: g-SNR of the first gradient, momentum buffer
                    if t == 1:
                        sd = g.std().nan_to_num() if g.numel() > 1 else torch.zeros((), dtype=g.dtype)
                        s["snr"], s["buf"] = g.norm() / (sd + EPS), g.clone()
                    else:
                        s["buf"].mul_(0.9).add_(0.1 * g)
                    p.mul_(1 - LR * WD).sub_(LR * s["snr"] * s["buf"])
    return params


for kind in ("adamw", "adam-mini", "sgd-sai"):
    tout = os.path.join(work, f"train-{kind}")
    args = ["train", "--model", pt, "--data", data, "--dtype", "float64", "--batch-size", str(B),
            "--steps", str(STEPS), "--optimizer", kind, "--lr", str(LR), "--beta1", "0.9", "--beta2", "0.95",
            "--eps", str(EPS), "--weight-decay", str(WD), "--schedule", "constant", "--warmup", "0",
            "--grad-clip", "0", "--dim", str(DIM), "--n-heads", str(HEADS), "--out", tout]
    if kind == "adam-mini":
        args += ["--config", os.path.join(out, "adam_mini.json")]
    run(args)
    ref = reference(kind)
    with h5py.File(os.path.join(tout, "final_params.h5")) as f:
        saved = set(f.keys()) if "params" not in f else set(f["params"].keys())
        worst = max(((torch.from_numpy(f[n][()]) - p.detach()).norm() / p.detach().norm()).item()
                    for n, p in ref.items())
    check(worst <= 1e-10, f"{kind} on the tied model vs its PyTorch reference: worst relative difference {worst:.2g}")
    check("lm_head.weight" not in str(saved), f"{kind}: final_params.h5 holds the shared tensor once")

# 4. Blockwise learning rates per slice: blockwise_lr.json puts c_attn's q and k columns in QK (x8) and
# its v columns in VO (x4); AdamW trained with it equals a per-element-lr AdamW written here (1e-10).
bw = json.load(open(os.path.join(out, "blockwise_lr.json")))
mult = {g["group"]: g["multiplier"] for g in bw["groups"]}
entry = {p["name"]: p for p in bw["params"]}
check([(sl["label"], sl["group"]) for sl in entry[ca].get("slices", [])] == [("q", "QK"), ("k", "QK"), ("v", "VO")],
      f"blockwise_lr.json gives c_attn's slices their own groups: {entry[ca].get('slices')}")
LR_BW = 1e-3  # the groups' multipliers reach 10: steps of 1e-2 like the others' would amplify rounding
tout = os.path.join(work, "train-blockwise-slices")
run(["train", "--model", pt, "--data", data, "--dtype", "float64", "--batch-size", str(B), "--steps", str(STEPS),
     "--optimizer", "adamw", "--lr", str(LR_BW), "--beta1", "0.9", "--beta2", "0.95", "--eps", str(EPS),
     "--weight-decay", str(WD), "--schedule", "constant", "--warmup", "0", "--grad-clip", "0",
     "--config", os.path.join(out, "blockwise_lr.json"), "--out", tout])
m = make_model()
params = dict(m.named_parameters())
lr_of = {n: torch.full_like(p, LR_BW * mult[entry[n]["group"]]) for n, p in params.items()}
for sl in entry[ca].get("slices", []):
    lr_of[ca].narrow(sl["dim"], sl["begin"], sl["length"]).fill_(LR_BW * mult[sl["group"]])
state = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in params.items()}
for t, (xb, yb) in enumerate(batches(), start=1):
    m.zero_grad()
    ce(m(xb), yb).backward()
    with torch.no_grad():
        for n, p in params.items():
            mm, vv = state[n]
            p.mul_(1 - lr_of[n] * WD)
            mm.mul_(0.9).add_(0.1 * p.grad)
            vv.mul_(0.95).add_(0.05 * p.grad * p.grad)
            p.sub_(lr_of[n] / (1 - 0.9 ** t) * mm / (vv.sqrt() / (1 - 0.95 ** t) ** 0.5 + EPS))
with h5py.File(os.path.join(tout, "final_params.h5")) as f:
    worst = max(((torch.from_numpy(f[n][()]) - p.detach()).norm() / p.detach().norm()).item() for n, p in params.items())
check(worst <= 1e-10, f"AdamW with per-slice blockwise rates vs a per-element-lr AdamW: worst relative difference {worst:.2g}")

# 5. Adam-mini with the fused weight cut per slice (--adam-mini slices). Oracle: the official v1.1.1
# partition of separate q_proj / k_proj / v_proj Linear layers ([out, in]: q and k per head of
# DIM/HEADS rows, v per row), written here on the transposed column slices of the Conv1D weight.
sout = os.path.join(work, "slices")
run(["profile", "--model", pt, "--data", data, "--dtype", "float64", "--batch-size", str(B), "--dim", str(DIM),
     "--n-heads", str(HEADS), "--topk", "1", "--probes", "3", "--density-runs", "0", "--block-eigs", "none",
     "--adam-mini", "slices", "--out", sout])
scfg = json.load(open(os.path.join(sout, "adam_mini.json")))
sentry = {p["name"]: p for p in scfg["params"]}
hd = DIM // HEADS
check(sentry[ca]["granularity"] == "sliced" and [(sl["label"], sl["granularity"], sl["n_blocks"]) for sl in sentry[ca]["slices"]]
      == [("q", "per-head", HEADS), ("k", "per-head", HEADS), ("v", "per-row", DIM)],
      f"adam_mini.json cuts {ca}: q, k per head, v per output unit")
ev = scfg["evidence"]
check(ev.get("sampled_param") == ca and len(ev["diagonal_mass_fraction"]) == 5,
      f"slice evidence from the Hessian: {dict(zip(ev.get('candidates', []), ev.get('diagonal_mass_fraction', [])))}")
others = {n: p for n, p in sentry.items() if n != ca}
check(all(p == {q["name"]: q for q in cfg["params"]}[n] for n, p in others.items()),
      "every other tensor as the official rules")
tout = os.path.join(work, "train-adam-mini-slices")
run(["train", "--model", pt, "--data", data, "--dtype", "float64", "--batch-size", str(B), "--steps", str(STEPS),
     "--optimizer", "adam-mini", "--lr", str(LR), "--beta1", "0.9", "--beta2", "0.95", "--eps", str(EPS),
     "--weight-decay", str(WD), "--schedule", "constant", "--warmup", "0", "--grad-clip", "0",
     "--config", os.path.join(sout, "adam_mini.json"), "--out", tout])


def unfused_mean_sq(g):
    """Per-element mean of g^2 over its block, the blocks of separate q/k/v Linear weights."""
    out = torch.empty_like(g)
    for s in range(3):
        lin = g[:, s * DIM:(s + 1) * DIM].T  # this slice as a Linear weight [out, in]
        rows = hd if s < 2 else 1  # q, k: a head's rows; v: one row
        blocks = lin.reshape(DIM // rows, -1).pow(2).mean(1)
        out[:, s * DIM:(s + 1) * DIM] = blocks.repeat_interleave(rows * DIM).view(DIM, DIM).T
    return out


m = make_model()
params = dict(m.named_parameters())
st = {n: {} for n in params}
for t, (xb, yb) in enumerate(batches(), start=1):
    m.zero_grad()
    ce(m(xb), yb).backward()
    with torch.no_grad():
        for n, p in params.items():
            g, s = p.grad, st[n]
            s.setdefault("m", torch.zeros_like(p))
            if n == ca:
                s.setdefault("v", torch.zeros_like(p))  # the block's value at each of its elements
                s["v"].mul_(0.95).add_(0.05 * unfused_mean_sq(g))
                denom = s["v"].sqrt() / (1 - 0.95 ** t) ** 0.5 + EPS
            else:
                size = sentry[n]["block_size"]
                s.setdefault("v", torch.zeros(p.numel() // size, dtype=p.dtype))
                s["v"].mul_(0.95).add_(0.05 * g.reshape(-1, size).pow(2).mean(1))
                denom = (s["v"].sqrt() / (1 - 0.95 ** t) ** 0.5 + EPS).repeat_interleave(size).view_as(p)
            if sentry[n]["weight_decay"]:
                p.mul_(1 - LR * WD)
            s["m"].mul_(0.9).add_(0.1 * g)
            p.sub_(LR * (s["m"] / (1 - 0.9 ** t)) / denom)
with h5py.File(os.path.join(tout, "final_params.h5")) as f:
    worst = max(((torch.from_numpy(f[n][()]) - p.detach()).norm() / p.detach().norm()).item() for n, p in params.items())
check(worst <= 1e-10, f"Adam-mini sliced vs separate q/k/v under the official rules: worst relative difference {worst:.2g}")

print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
sys.exit(1 if failures else 0)
