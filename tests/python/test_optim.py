"""blocksharp.optim in a user's loop (pytest). Oracles: torch.optim.AdamW, Python transcriptions of
the official Adam-mini v1.1.1 and SGD-SaI steps (references.py), torch.optim's own semantics
(schedulers, zero_grad, state_dict through torch.save), and `blocksharp train` on the same TorchScript
model and batches, bit for bit. Environment: BLOCKSHARP (the CLI), BLOCKSHARP_WORK (a scratch folder)."""
import copy
import io
import json
import os
import subprocess
import sys

import h5py
import pytest
import torch

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
import blocksharp  # noqa: E402
from blocksharp import optim  # noqa: E402
from hf_models import HfGpt2  # noqa: E402
from models import TinyLm, loss_fn  # noqa: E402
from references import AdamMiniV111, SgdSaiV103  # noqa: E402

WORK = os.environ.get("BLOCKSHARP_WORK", "/tmp/blocksharp-pytest")
CLI = os.environ.get("BLOCKSHARP", "blocksharp")
torch.set_default_dtype(torch.float64)


def batches(n, rows=4, T=5, vocab=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, vocab, (rows, T), generator=g), torch.randint(0, vocab, (rows, T), generator=g))
            for _ in range(n)]


def run(model, opt, data, sched=None):
    for x, y in data:
        opt.zero_grad()
        loss_fn("ce", model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()


def max_diff(a, b):
    return max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))


def test_every_registry_optimizer_has_a_class_that_trains():
    data = batches(4)
    for entry in blocksharp.optimizers():
        cls = optim.by_name(entry["name"])
        assert cls.optimizer == entry["name"] and issubclass(cls, torch.optim.Optimizer)
        torch.manual_seed(0)
        model = TinyLm()
        before = copy.deepcopy(model)
        opt = cls(model.named_parameters(), dim=8, n_heads=2)
        assert opt.defaults["lr"] == entry["lr"] and opt.defaults["weight_decay"] == entry["weight_decay"]
        run(model, opt, data)
        assert max_diff(model, before) > 0, entry["name"]
        assert all(torch.isfinite(p).all() for p in model.parameters()), entry["name"]


def test_adamw_matches_torch_with_groups_and_a_scheduler():
    torch.manual_seed(1)
    ref = TinyLm()
    mine = copy.deepcopy(ref)

    def groups(m):  # the usual decay / no-decay split
        named = list(m.named_parameters())
        return [{"params": [p for n, p in named if p.dim() >= 2], "weight_decay": 0.1},
                {"params": [p for n, p in named if p.dim() < 2], "weight_decay": 0.0}]
    o_ref = torch.optim.AdamW(groups(ref), lr=3e-2, betas=(0.9, 0.95), eps=1e-8)
    o_mine = optim.AdamW(groups(mine), lr=3e-2, betas=(0.9, 0.95), eps=1e-8)
    # lr changes mid-run: the scheduler writes param_groups[i]["lr"], read at every step
    s_ref = torch.optim.lr_scheduler.StepLR(o_ref, step_size=3, gamma=0.3)
    s_mine = torch.optim.lr_scheduler.StepLR(o_mine, step_size=3, gamma=0.3)
    data = batches(10)
    run(ref, o_ref, data, s_ref)
    run(mine, o_mine, data, s_mine)
    assert o_mine.param_groups[0]["lr"] == pytest.approx(3e-2 * 0.3 ** 3)
    assert max_diff(ref, mine) < 1e-10
    # and the schedule mattered: without it the run lands elsewhere
    plain = copy.deepcopy(TinyLm())
    torch.manual_seed(1)
    plain = TinyLm()
    run(plain, optim.AdamW(groups(plain), lr=3e-2, betas=(0.9, 0.95)), data)
    assert max_diff(plain, mine) > 1e-4


def test_adam_mini_matches_official_v111_on_a_tied_hf_gpt2():
    torch.manual_seed(2)
    ref = HfGpt2(vocab=16, n_positions=8, dim=8, heads=2, n_layer=1)
    assert ref.lm_head.weight is ref.transformer.wte.weight  # tied: named_parameters lists it once
    mine = copy.deepcopy(ref)
    kw = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    o_ref = AdamMiniV111(ref.named_parameters(), dim=8, n_heads=2, **kw)
    o_mine = optim.AdamMini(mine.named_parameters(), dim=8, n_heads=2, **kw)
    assert mine.lm_head.weight is mine.transformer.wte.weight
    data = batches(8, vocab=16)
    run(ref, o_ref, data)
    run(mine, o_mine, data)
    assert max_diff(ref, mine) < 1e-10
    assert mine.lm_head.weight is mine.transformer.wte.weight


def test_sgd_sai_matches_official():
    torch.manual_seed(3)
    ref = TinyLm()
    mine = copy.deepcopy(ref)
    o_ref = SgdSaiV103(ref.parameters(), lr=1e-2, momentum=0.9, eps=1e-8, weight_decay=1e-2)
    o_mine = optim.SGDSaI(mine.named_parameters(), lr=1e-2, momentum=0.9, eps=1e-8, weight_decay=1e-2)
    data = batches(8)
    run(ref, o_ref, data)
    run(mine, o_mine, data)
    assert max_diff(ref, mine) < 1e-10


def test_state_dict_round_trips_through_torch_save():
    for name in ("adamw", "adam-mini", "sgd-sai", "apollo", "galore", "frugal", "adapm", "adam-clip"):
        torch.manual_seed(4)
        a = TinyLm()
        cls = optim.by_name(name)
        oa = cls(a.named_parameters(), dim=8, n_heads=2, **({"rank": 2} if name in ("apollo", "galore") else {}))
        data = batches(6)
        run(a, oa, data[:3])
        buf = io.BytesIO()
        torch.save({"model": a.state_dict(), "opt": oa.state_dict()}, buf)
        run(a, oa, data[3:])  # the uninterrupted run
        buf.seek(0)
        saved = torch.load(buf)
        b = TinyLm()
        b.load_state_dict(saved["model"])
        ob = cls(b.named_parameters(), dim=8, n_heads=2, **({"rank": 2} if name in ("apollo", "galore") else {}))
        ob.load_state_dict(saved["opt"])
        run(b, ob, data[3:])
        assert max_diff(a, b) == 0, name
        assert set(saved["opt"]) == {"state", "param_groups", "blocksharp"}
        assert isinstance(next(iter(saved["opt"]["state"])), int)  # PyTorch's numbering of tensors


def test_zero_grad_set_to_none_and_frozen_parameters():
    torch.manual_seed(5)
    m = TinyLm()
    m.ln_f.weight.requires_grad_(False)  # frozen: in the group, never stepped
    frozen = m.ln_f.weight.detach().clone()
    opt = optim.AdamW(m.named_parameters(), lr=1e-2)
    storage = [p.data_ptr() for p in m.parameters()]
    before_steps = copy.deepcopy(m)
    run(m, opt, batches(2))
    assert torch.equal(m.ln_f.weight, frozen)
    # updated in place: the same storage, new values (the C++ optimizer holds the very tensors)
    assert [p.data_ptr() for p in m.parameters()] == storage and max_diff(m, before_steps) > 0
    opt.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in m.parameters())
    before = copy.deepcopy(m)
    opt.step()  # no gradients: nothing moves
    assert max_diff(m, before) == 0
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is None or (p.grad == 0).all() for p in m.parameters())


def test_errors_are_value_errors_with_one_line():
    m = TinyLm()
    cases = [
        (lambda: optim.AdamW(m.named_parameters(), lr=-1), "lr must be a positive finite number"),
        (lambda: optim.AdamW(m.named_parameters(), betas=(1.5, 0.9)), "betas[0] must be in [0, 1)"),
        (lambda: optim.AdamMini(m.named_parameters()), "dim= and n_heads="),
        (lambda: optim.AdamMini(list(m.parameters()), dim=8, n_heads=2), "needs parameter names"),
        (lambda: optim.AdamW(m.named_parameters(), config={"format": "blocksharp.sgd_sai/1"}),
         "takes blockwise_lr"),
        (lambda: optim.Frugal(m.named_parameters(), selection="diagonal"), "selection 'diagonal'"),
        (lambda: optim.AdamW(m.named_parameters(), colour=3), "unknown option 'colour'"),
    ]
    for make, text in cases:
        with pytest.raises(ValueError) as e:
            make()
        assert text in str(e.value) and "\n" not in str(e.value), str(e.value)
    opt = optim.AdamW(m.named_parameters())
    opt.param_groups[0]["betas"] = (0.8, 0.999)
    with pytest.raises(ValueError, match="only lr may change"):
        opt.step()
    # OneCycleLR cycles beta1 by default: the line says how to keep it fixed, and with that it runs.
    opt = optim.AdamW(m.named_parameters())
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=4)
    with pytest.raises(ValueError, match=r"unless cycle_momentum=False\)$"):
        opt.step()
    opt = optim.AdamW(m.named_parameters())
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=4, cycle_momentum=False)
    opt.step()
    sched.step()


def test_half_precision_sparse_and_unfrozen_tensors_are_one_line_value_errors():
    # A bfloat16/float16 trainable tensor: refused when the optimizer is made (it used to fail at the first
    # step with LibTorch's dispatch message); a frozen bfloat16 backbone beside float64 adapters is fine.
    for dtype, word in ((torch.bfloat16, "bfloat16"), (torch.float16, "float16")):
        lin = torch.nn.Linear(4, 3).to(dtype)
        with pytest.raises(ValueError) as e:
            optim.AdamMini(lin.named_parameters(), dim=4, n_heads=1)
        assert f"parameter 'weight' is {word}" in str(e.value) and "\n" not in str(e.value), str(e.value)
    backbone, adapter = torch.nn.Linear(4, 4).to(torch.bfloat16).requires_grad_(False), torch.nn.Linear(4, 2)
    opt = optim.AdamW(list(adapter.named_parameters()) + [("backbone." + n, p) for n, p in backbone.named_parameters()])
    ref = torch.optim.AdamW(copy.deepcopy(adapter).parameters())
    ref_adapter = ref.param_groups[0]["params"]
    x = torch.randn(5, 4)
    for o, w in ((opt, list(adapter.parameters())), (ref, ref_adapter)):
        o.zero_grad()
        (torch.nn.functional.linear(backbone(x.bfloat16()).double(), w[0], w[1]) ** 2).mean().backward()
        o.step()
    assert max((a - b).abs().max().item() for a, b in zip(adapter.parameters(), ref_adapter)) < 1e-15
    # A sparse gradient: one line naming the tensor, at the step, before anything moves.
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = optim.AdamW(emb.named_parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    before = emb.weight.detach().clone()
    with pytest.raises(ValueError, match="parameter 'weight' has a sparse gradient"):
        opt.step()
    assert torch.equal(emb.weight, before)
    # A tensor frozen when the optimizer was made and unfrozen later: it used to stay as it was, silently.
    m = TinyLm()
    m.ln_f.weight.requires_grad_(False)
    opt = optim.AdamW(m.named_parameters(), lr=1e-2)
    m.ln_f.weight.requires_grad_(True)
    x, y = batches(1)[0]
    loss_fn("ce", m(x), y).backward()
    before = copy.deepcopy(m)
    with pytest.raises(ValueError) as e:
        opt.step()
    assert "parameter 'ln_f.weight' was frozen" in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert max_diff(m, before) == 0


def test_blockwise_config_becomes_param_groups_on_fused_qkv():
    """profile's blockwise_lr.json on a Hugging Face GPT-2 (fused c_attn, tied head): one param group
    per config group with lr * multiplier; c_attn's q/k and v slices move at their own rates. Oracle:
    torch.optim.AdamW with the same groups, c_attn's v columns rescaled from its fastest slice's rate."""
    work = os.path.join(WORK, "blockwise")
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(6)
    model = HfGpt2(vocab=16, n_positions=8, dim=8, heads=2, n_layer=1)
    data = batches(4, vocab=16, T=6)
    prof = blocksharp.curvature.profile(model, data[:1], topk=1, probes=4, density_runs=0, dim=8, n_heads=2)
    prof.write_configs(work)
    cfg = json.load(open(os.path.join(work, "blockwise_lr.json")))
    mine = copy.deepcopy(model)
    opt = optim.AdamW(mine.named_parameters(), lr=1e-2, config=os.path.join(work, "blockwise_lr.json"))
    names = {id(p): n for n, p in mine.named_parameters()}
    want = {g["group"]: g["multiplier"] for g in cfg["groups"]}
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(1e-2 * want[g["group"]])
        for p in g["params"]:
            entry = next(e for e in cfg["params"] if e["name"] == names[id(p)])
            assert entry["group"] == g["group"]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(mine.parameters()))
    # the oracle, one tensor at a time: AdamW at the tensor's fastest slice's rate, slices rescaled
    ref = copy.deepcopy(model)
    mult = {}
    for e in cfg["params"]:
        m = want[e["group"]]
        sl = [(s["dim"], s["begin"], s["length"], want[s["group"]]) for s in e.get("slices", [])]
        mult[e["name"]] = (max([m] + [s[3] for s in sl]) if sl else m, sl)
    rparams = dict(ref.named_parameters())
    ref_opt = torch.optim.AdamW([{"params": [rparams[n]], "lr": 1e-2 * mult[n][0]} for n in rparams], lr=1e-2)
    for x, y in data:
        ref_opt.zero_grad()
        loss_fn("ce", ref(x), y).backward()
        before = {n: p.detach().clone() for n, p in rparams.items()}
        ref_opt.step()
        with torch.no_grad():
            for n, (top, sl) in mult.items():
                for d, b, ln, m in sl:
                    now, was = rparams[n].narrow(d, b, ln), before[n].narrow(d, b, ln)
                    now.copy_(was + (now - was) * (m / top))
        opt.zero_grad()
        loss_fn("ce", mine(x), y).backward()
        opt.step()
    assert any("slices" in e for e in cfg["params"])
    # c_attn's k bias has an exactly-zero gradient in exact arithmetic (softmax ignores a shift shared by
    # all keys), so its float64 gradient is rounding noise of ~1e-17 that Adam scales by lr/eps: those
    # coordinates differ between any two implementations at ~1e-10. Every other coordinate agrees to
    # ~1e-16; the bound covers both, far below the 0.1-0.4 the parameters moved.
    assert max_diff(ref, mine) < 1e-9
    moved = max((a - b).abs().max().item() for a, b in zip(model.parameters(), mine.parameters()))
    assert moved > 1e-2


@pytest.mark.parametrize("name", ["adamw", "adam-mini", "sgd-sai"])
def test_python_loop_equals_blocksharp_train_bit_for_bit(name):
    """The same TorchScript model, batches and hyperparameters through `blocksharp train` (constant
    schedule, no clipping) and through a Python loop with blocksharp.optim: identical parameters."""
    work = os.path.join(WORK, "train_" + name)
    os.makedirs(work, exist_ok=True)
    torch.manual_seed(7)
    pt, h5, out = (os.path.join(work, f) for f in ("lm.pt", "lm.h5", "out"))
    torch.jit.script(TinyLm()).save(pt)
    B, steps = 4, 6
    data = batches(steps, rows=B)
    with h5py.File(h5, "w") as f:
        f["inputs"] = torch.cat([x for x, _ in data]).numpy()
        f["targets"] = torch.cat([y for _, y in data]).numpy()
    lr, wd = 1e-2, 0.05
    r = subprocess.run([CLI, "train", "--model", pt, "--data", h5, "--dtype", "float64", "--batch-size", str(B),
                        "--steps", str(steps), "--optimizer", name, "--lr", str(lr), "--weight-decay", str(wd),
                        "--schedule", "constant", "--warmup", "0", "--grad-clip", "0", "--dim", "8", "--n-heads",
                        "2", "--out", out], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    torch._C._set_graph_executor_optimize(False)  # as the CLI runs TorchScript: eager autograd
    model = torch.jit.load(pt).double()
    model.train()
    opt = optim.by_name(name)(model.named_parameters(), lr=lr, weight_decay=wd, dim=8, n_heads=2)
    run(model, opt, data)
    with h5py.File(os.path.join(out, "final_params.h5")) as f:
        for n, p in model.named_parameters():
            assert torch.equal(torch.from_numpy(f[n][()]), p.detach()), n
