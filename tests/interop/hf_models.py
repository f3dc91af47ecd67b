"""Models in Hugging Face's own layouts, written for the interop tests with plain torch (no transformers
package here): GPT-2 with Conv1D projections (weight [in, out]), a fused c_attn, and lm_head tied to
transformer.wte; each model also has a functional form taking a {name: tensor} dict, the oracle's way
to build a dense Hessian over exactly the tensors named_parameters() lists."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Conv1D(nn.Module):
    """transformers.pytorch_utils.Conv1D: y = x W + b with W stored [in, out]."""

    def __init__(self, n_out: int, n_in: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.2)
        self.bias = nn.Parameter(torch.randn(n_out) * 0.1)

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.c_attn = Conv1D(3 * dim, dim)
        self.c_proj = Conv1D(dim, dim)
        self.heads = heads

    def forward(self, x):
        return attention(x, self.c_attn.weight, self.c_attn.bias, self.c_proj.weight, self.c_proj.bias, self.heads)


class Mlp(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.c_fc = Conv1D(4 * dim, dim)
        self.c_proj = Conv1D(dim, 4 * dim)

    def forward(self, x):
        return F.gelu(x @ self.c_fc.weight + self.c_fc.bias, approximate="tanh") @ self.c_proj.weight + self.c_proj.bias


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, vocab: int, n_positions: int, dim: int, heads: int, n_layer: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(n_positions, dim)
        self.h = nn.ModuleList([Block(dim, heads) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(dim)


class HfGpt2(nn.Module):
    """GPT2LMHeadModel's parameter names and layout; lm_head.weight is transformer.wte.weight."""

    def __init__(self, vocab=16, n_positions=8, dim=8, heads=2, n_layer=1):
        super().__init__()
        self.transformer = Transformer(vocab, n_positions, dim, heads, n_layer)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tie_weights()
        with torch.no_grad():  # LayerNorm affine parameters off their 1/0 start, so every term matters
            for n, p in self.named_parameters():
                if "ln_" in n:
                    p.add_(torch.randn_like(p) * 0.1)
        self.heads, self.n_layer = heads, n_layer

    def forward(self, tokens):
        t = self.transformer
        x = t.wte(tokens) + t.wpe(torch.arange(tokens.size(1), device=tokens.device)).unsqueeze(0)
        for block in t.h:
            x = block(x)
        return self.lm_head(t.ln_f(x))


def attention(x, w_attn, b_attn, w_proj, b_proj, heads: int):
    B, T, D = x.shape
    qkv = x @ w_attn + b_attn
    q, k, v = qkv[:, :, :D], qkv[:, :, D:2 * D], qkv[:, :, 2 * D:]
    q = q.view(B, T, heads, D // heads).transpose(1, 2)
    k = k.view(B, T, heads, D // heads).transpose(1, 2)
    v = v.view(B, T, heads, D // heads).transpose(1, 2)
    att = q @ k.transpose(-2, -1) / math.sqrt(D // heads)
    mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
    y = att.masked_fill(mask, float("-inf")).softmax(-1) @ v
    return y.transpose(1, 2).reshape(B, T, D) @ w_proj + b_proj


def hf_gpt2_functional(p, tokens, heads: int, n_layer: int, frozen=None):
    """The same forward from a dict of tensors; a tied head reads transformer.wte.weight."""
    p = dict(frozen or {}, **p)
    ln = lambda x, pre: F.layer_norm(x, (x.size(-1),), p[pre + ".weight"], p[pre + ".bias"])  # noqa: E731
    x = F.embedding(tokens, p["transformer.wte.weight"]) + p["transformer.wpe.weight"][: tokens.size(1)].unsqueeze(0)
    for i in range(n_layer):
        pre = f"transformer.h.{i}."
        x = x + attention(ln(x, pre + "ln_1"), p[pre + "attn.c_attn.weight"], p[pre + "attn.c_attn.bias"],
                          p[pre + "attn.c_proj.weight"], p[pre + "attn.c_proj.bias"], heads)
        h = ln(x, pre + "ln_2")
        h = F.gelu(h @ p[pre + "mlp.c_fc.weight"] + p[pre + "mlp.c_fc.bias"], approximate="tanh")
        x = x + h @ p[pre + "mlp.c_proj.weight"] + p[pre + "mlp.c_proj.bias"]
    return ln(x, "transformer.ln_f") @ p["transformer.wte.weight"].t()


def rotate_half(x):
    h = x.size(-1) // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def hf_llama_logits(p, tokens, heads: int, kv_heads: int, n_layer: int, eps: float = 1e-6, theta: float = 10000.0):
    """LlamaForCausalLM's forward from its state dict (HF names): RMSNorm, rotate_half RoPE,
    grouped-query attention (repeat_kv), SwiGLU, untied or tied head."""
    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    x = F.embedding(tokens, p["model.embed_tokens.weight"])
    B, T, D = x.shape
    hd = D // heads
    inv = theta ** (-torch.arange(0, hd, 2, dtype=x.dtype) / hd)
    ang = torch.outer(torch.arange(T, dtype=x.dtype), inv)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    for i in range(n_layer):
        pre = f"model.layers.{i}."
        h = rms(x, p[pre + "input_layernorm.weight"])
        q = (h @ p[pre + "self_attn.q_proj.weight"].t()).view(B, T, heads, hd).transpose(1, 2)
        k = (h @ p[pre + "self_attn.k_proj.weight"].t()).view(B, T, kv_heads, hd).transpose(1, 2)
        v = (h @ p[pre + "self_attn.v_proj.weight"].t()).view(B, T, kv_heads, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(heads // kv_heads, 1), v.repeat_interleave(heads // kv_heads, 1)
        att = (q @ k.transpose(-2, -1) / math.sqrt(hd)).masked_fill(mask, float("-inf")).softmax(-1)
        x = x + (att @ v).transpose(1, 2).reshape(B, T, D) @ p[pre + "self_attn.o_proj.weight"].t()
        h = rms(x, p[pre + "post_attention_layernorm.weight"])
        g = F.silu(h @ p[pre + "mlp.gate_proj.weight"].t()) * (h @ p[pre + "mlp.up_proj.weight"].t())
        x = x + g @ p[pre + "mlp.down_proj.weight"].t()
    head = p.get("lm_head.weight", p["model.embed_tokens.weight"])
    return rms(x, p["model.norm.weight"]) @ head.t()
