"""Independent Python transcriptions of the official optimizers' steps (ALGORITHMS.md §1, §3), the
oracles of test_optim.py: Adam-mini v1.1.1 (zyushun/Adam-mini, adam_mini.py) and SGD-SaI v1.0.3
(AnonymousAlethiometer/SGD_SaI, sgd_sai.py). Plain PyTorch, float64, one tensor at a time."""
import torch

WQK = ("k_proj", "q_proj", "wq", "wk", "query", "key")
ROWS = ("embed", "embd", "wte", "lm_head", "output", "final_layer", "v_proj", "wv", "value", "o_proj", "wo",
        "attn.proj", "feed_forward", "linear", "mlp")


class AdamMiniV111:
    """Adam-mini v1.1.1: per-head v for q/k, per-row v for embeddings/outputs/v/o/MLP, per-coordinate
    for biases, one v per tensor otherwise; decay before the step, none for norm/ln/bias names."""

    def __init__(self, named, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, dim=2048, n_heads=32):
        self.params = [(n.lower(), p) for n, p in named if p.requires_grad]
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, betas[0], betas[1], eps, weight_decay
        self.head_numel = dim * dim // n_heads
        self.state = {}

    def zero_grad(self):
        for _, p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for name, p in self.params:
            g = p.grad
            if g is None:
                continue
            st = self.state.setdefault(name, {"step": 0, "m": torch.zeros_like(p)})
            st["step"] += 1
            t = st["step"]
            wd = 0.0 if any(k in name for k in ("norm", "ln", "bias")) else self.wd
            bc1, bc2 = 1 - self.b1 ** t, 1 - self.b2 ** t
            if "bias" in name:  # full Adam
                v = st.setdefault("v", torch.zeros_like(p))
                v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
                h = v.sqrt() / bc2 ** 0.5 + self.eps
                blocks_h = h
            else:
                if any(k in name for k in WQK):
                    gb = g.reshape(-1, self.head_numel)
                elif any(k in name for k in ROWS):
                    gb = g.reshape(g.shape[0], -1)
                else:
                    gb = g.reshape(1, -1)
                v = st.setdefault("vmean", torch.zeros(gb.shape[0], 1, dtype=p.dtype))
                v.mul_(self.b2).add_((gb * gb).mean(dim=1, keepdim=True), alpha=1 - self.b2)
                h = (v.sqrt() / bc2 ** 0.5 + self.eps).expand_as(gb).reshape(p.shape)
                blocks_h = h
            if wd > 0:
                p.mul_(1 - self.lr * wd)
            st["m"].lerp_(g, 1 - self.b1)
            p.addcdiv_(st["m"], blocks_h, value=-self.lr / bc1)


class SgdSaiV103:
    """SGD-SaI: g-SNR = ||g|| / (std(g).nan_to_num() + eps) from the first gradient; buffer = g1, then
    mu*buf + (1-mu)*g; p <- p(1 - lr wd) - lr gsnr buf."""

    def __init__(self, params, lr=1e-2, momentum=0.9, eps=1e-8, weight_decay=1e-2):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.mu, self.eps, self.wd = lr, momentum, eps, weight_decay
        self.state = {}

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        for i, p in enumerate(self.params):
            g = p.grad
            if g is None:
                continue
            st = self.state.get(i)
            if st is None:
                sigma = g.std().nan_to_num()
                st = self.state[i] = {"gsnr": g.norm() / (sigma + self.eps), "buf": g.clone()}
            else:
                st["buf"].mul_(self.mu).add_(g, alpha=1 - self.mu)
            if self.wd != 0:
                p.mul_(1 - self.lr * self.wd)
            p.add_(st["buf"], alpha=-self.lr * float(st["gsnr"]))
