"""The PyTorch side of `blocksharp bench train`: a full training step (forward, cross-entropy, backward,
global-norm clipping, AdamW) of the built-in gpt2-small-cpu / llama-small-cpu architectures written the
way a PyTorch user writes them (nn.Linear per projection, F.gelu(approximate="tanh"), nn.LayerNorm, an
RMSNorm module, rotary embeddings, a masked-softmax attention over [B, H, T, d], torch.optim.AdamW),
in plain eager mode. Same parameter names and shapes as blocksharp's models, random tokens of the same
batch shape, the same LibTorch build and thread count. Prints one JSON object: median step time,
tokens per second and peak resident memory.

    /usr/bin/python3 tools/experiments/bench_train_pytorch.py --model gpt2-small-cpu --batch-size 8 \
        --seq-len 128 --threads 2 --steps 10
"""
import argparse
import ctypes
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# The presets of src/models/model_zoo.cpp that this script mirrors.
PRESETS = {
    "gpt2-tiny": dict(family="gpt2", n_layer=2, dim=64, n_heads=4, n_kv_heads=4, vocab=256, seq_len=64, tied=True),
    "gpt2-small-cpu": dict(family="gpt2", n_layer=8, dim=256, n_heads=8, n_kv_heads=8, vocab=256, seq_len=128,
                           tied=True),
    # As `bench train` builds it: the byte tokenizer's 256 ids (GPT-2's 50,257 come with --tokenizer gpt2).
    "gpt2-124m": dict(family="gpt2", n_layer=12, dim=768, n_heads=12, n_kv_heads=12, vocab=256, seq_len=1024,
                      tied=True),
    "llama-tiny": dict(family="llama", n_layer=2, dim=64, n_heads=4, n_kv_heads=2, vocab=256, seq_len=64, tied=False),
    "llama-small-cpu": dict(family="llama", n_layer=8, dim=256, n_heads=8, n_kv_heads=4, vocab=256, seq_len=128,
                            tied=False),
}


def causal_attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v with future keys masked; k, v repeated for grouped queries (repeat_kv)."""
    rep = q.size(1) // k.size(1)
    if rep > 1:
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    T = q.size(2)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.size(-1))
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    return torch.softmax(scores.masked_fill(mask, float("-inf")), -1) @ v


class Gpt2Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_heads = c["n_heads"]
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(c["dim"], c["dim"]) for _ in range(4))

    def forward(self, x):
        B, T, D = x.shape
        heads = lambda t: t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)
        y = causal_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)))
        return self.o_proj(y.transpose(1, 2).reshape(B, T, D))


class Gpt2Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(c["dim"]), Gpt2Attention(c), nn.LayerNorm(c["dim"])
        self.mlp = nn.Module()
        self.mlp.fc_in, self.mlp.fc_out = nn.Linear(c["dim"], 4 * c["dim"]), nn.Linear(4 * c["dim"], c["dim"])

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp.fc_out(F.gelu(self.mlp.fc_in(self.ln_2(x)), approximate="tanh"))


class Gpt2(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(c["vocab"], c["dim"]), nn.Embedding(c["seq_len"], c["dim"])
        self.h = nn.ModuleList(Gpt2Block(c) for _ in range(c["n_layer"]))
        self.ln_f = nn.LayerNorm(c["dim"])

    def forward(self, tokens):
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.size(1)))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.t()


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(dim)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope(x):
    """Rotary embedding over [B, H, T, d], the halves (x1, x2) rotated (Hugging Face's rotate_half)."""
    T, d = x.size(2), x.size(3)
    inv_freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=x.dtype) / d)
    freqs = torch.outer(torch.arange(T, dtype=x.dtype), inv_freq)
    cos, sin = freqs.cos(), freqs.sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


class LlamaLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c["dim"], c["dim"] // c["n_heads"]
        hidden = ((8 * d // 3 + 7) // 8) * 8
        self.n_heads, self.n_kv, self.hd = c["n_heads"], c["n_kv_heads"], hd
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(d), RMSNorm(d)
        self.self_attn, self.mlp = nn.Module(), nn.Module()
        a = self.self_attn
        a.q_proj = nn.Linear(d, self.n_heads * hd, bias=False)
        a.k_proj = nn.Linear(d, self.n_kv * hd, bias=False)
        a.v_proj = nn.Linear(d, self.n_kv * hd, bias=False)
        a.o_proj = nn.Linear(self.n_heads * hd, d, bias=False)
        m = self.mlp
        m.gate_proj, m.up_proj = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False)
        m.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        B, T, _ = x.shape
        a, m = self.self_attn, self.mlp
        h = self.input_layernorm(x)
        heads = lambda t, n: t.view(B, T, n, self.hd).transpose(1, 2)
        y = causal_attention(rope(heads(a.q_proj(h), self.n_heads)), rope(heads(a.k_proj(h), self.n_kv)),
                             heads(a.v_proj(h), self.n_kv))
        x = x + a.o_proj(y.transpose(1, 2).reshape(B, T, -1))
        h = self.post_attention_layernorm(x)
        return x + m.down_proj(F.silu(m.gate_proj(h)) * m.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["dim"])
        self.layers = nn.ModuleList(LlamaLayer(c) for _ in range(c["n_layer"]))
        self.norm = RMSNorm(c["dim"])
        self.lm_head = nn.Linear(c["dim"], c["vocab"], bias=False)

    def forward(self, tokens):
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def status_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def init_like_blocksharp(model, c):
    """blocksharp's initialisation (GPT-2's): N(0, 0.02) weights, zero biases, residual projections (o_proj,
    fc_out, down_proj) at 0.02 / sqrt(2 n_layer), GPT-2's position table N(0, 0.01); norms at one."""
    resid = 0.02 / math.sqrt(2 * c["n_layer"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                if "norm" not in name and "ln_" not in name:
                    p.zero_()
            elif name == "wpe.weight":
                p.normal_(0.0, 0.01)
            else:
                last = name.split(".")[-2]
                p.normal_(0.0, resid if last in ("o_proj", "fc_out", "down_proj") else 0.02)


def rss_mib():
    return status_mib("VmRSS")


def peak_rss_mib():
    return status_mib("VmHWM")


def blas_name():
    """The BLAS this process's torch runs its float32 products on, as blocksharp's `gemm` key names it:
    "OpenBLAS <core>" (the kernel set OpenBLAS picked for this CPU, or OPENBLAS_CORETYPE's), else the
    build's BLAS_INFO."""
    try:  # torch already loaded it: dlopen of the same name returns the loaded library
        core = ctypes.CDLL("libblas.so.3").openblas_get_corename
        core.restype = ctypes.c_char_p
        return "OpenBLAS " + core().decode()
    except (OSError, AttributeError):
        info = [f for f in torch.__config__.show().replace(",", "\n").split("\n") if "BLAS_INFO=" in f]
        return info[0].split("=")[1].strip() if info else "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gpt2-small-cpu", choices=sorted(PRESETS))
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=0, help="0: the preset's context")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (after 2 untimed)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    c = PRESETS[a.model]
    T = a.seq_len or c["seq_len"]
    torch.manual_seed(a.seed)
    try:  # the peak of this phase alone (Linux: clear_refs 5 resets VmHWM), as blocksharp's side reads it
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    rss_before = rss_mib()
    model = Gpt2(c) if c["family"] == "gpt2" else Llama(c)
    init_like_blocksharp(model, c)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(a.seed)
    tokens = torch.randint(0, c["vocab"], (a.batch_size, T + 1), generator=g)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        loss = F.cross_entropy(model(x).reshape(-1, c["vocab"]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(2):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        last_loss = step()
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    print(json.dumps({
        "framework": "pytorch-eager",
        "torch": torch.__version__,
        "blas": blas_name(),
        "model": a.model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "batch_size": a.batch_size,
        "seq_len": T,
        "threads": torch.get_num_threads(),
        "token_sum": int(x.sum()),
        "last_loss": last_loss,
        "step_ms": t * 1e3,
        "step_ms_min": min(times) * 1e3,
        "tokens_per_s": a.batch_size * T / t,
        "peak_rss_MiB": peak_rss_mib(),
        "rss_before_model_MiB": rss_before,
    }))


if __name__ == "__main__":
    main()
