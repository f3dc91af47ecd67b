"""Small PyTorch models scripted for the interop tests (written with Debian's python3-torch)."""
import torch
import torch.nn as nn


class TinyMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class TinyLm(nn.Module):
    """Embedding, one causal attention head with q/k/v/o projections, LayerNorm, output head."""

    def __init__(self, vocab: int = 11, dim: int = 8):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.o_proj = nn.Linear(dim, dim)
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.wte(tokens)
        T = tokens.size(1)
        att = self.q_proj(x) @ self.k_proj(x).transpose(1, 2) / (x.size(-1) ** 0.5)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        att = att.masked_fill(mask, float("-inf")).softmax(-1)
        x = x + self.o_proj(att @ self.v_proj(x))
        return self.lm_head(self.ln_f(x))


class TinyRegressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        return self.lin(torch.sin(x))


def make_case(kind: str, rows: int, gen: torch.Generator):
    """Returns (scripted model, inputs, targets, loss name)."""
    if kind == "mlp":
        return (torch.jit.script(TinyMlp()), torch.randn(rows, 6, generator=gen),
                torch.randint(0, 3, (rows,), generator=gen), "ce")
    if kind == "lm":
        return (torch.jit.script(TinyLm()), torch.randint(0, 11, (rows, 5), generator=gen),
                torch.randint(0, 11, (rows, 5), generator=gen), "ce")
    if kind == "reg":
        return (torch.jit.trace(TinyRegressor(), torch.randn(2, 4)), torch.randn(rows, 4, generator=gen),
                torch.randn(rows, 2, generator=gen), "mse")
    raise ValueError(kind)


def loss_fn(name: str, out, targets):
    if name == "ce":
        return torch.nn.functional.cross_entropy(out.reshape(-1, out.size(-1)), targets.reshape(-1))
    return torch.nn.functional.mse_loss(out, targets)
