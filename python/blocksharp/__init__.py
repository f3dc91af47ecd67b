"""blocksharp inside a PyTorch loop: the C++ library's optimizers as torch.optim.Optimizer classes
(blocksharp.optim) and its curvature measurements on your nn.Module (blocksharp.curvature).

    import blocksharp
    opt = blocksharp.optim.AdamMini(model.named_parameters(), lr=1e-3, dim=64, n_heads=4)
    prof = blocksharp.curvature.profile(model, batches, topk=3)
    prof.write_configs("out")           # profile.h5, adam_mini.json, blockwise_lr.json, sgd_sai.json
"""
import torch  # noqa: F401  (loads LibTorch and PyTorch's bindings before the extension)

from . import _core  # noqa: F401
from . import curvature, optim  # noqa: F401

__all__ = ["optim", "curvature", "optimizers"]


def optimizers():
    """The registry: one dict per optimizer (name, what, official defaults, config kinds)."""
    return _core.optimizers()
