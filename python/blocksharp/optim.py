"""blocksharp.optim: every optimizer of blocksharp's registry as a torch.optim.Optimizer.

The step runs in C++ (the fused loops `blocksharp train` uses) on the very tensors of your model:
parameters are updated in place, gradients are read where backward() left them, nothing is copied.

    opt = blocksharp.optim.AdamMini(model.named_parameters(), lr=1e-3, dim=64, n_heads=4)
    opt = blocksharp.optim.AdamW(model.named_parameters(), config="out/blockwise_lr.json")
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)

What follows torch.optim, and what does not:
- params: model.named_parameters() (names decide Adam-mini's blocks and match configs), a list of
  tensors, or param groups whose "params" are either; the trainable ones float32 or float64 CPU
  tensors (a bfloat16 model keeps float32 master weights, as mixed-precision training does). Frozen
  tensors (requires_grad False) stay in their groups and are never stepped; one that has a gradient at
  a step (unfrozen after the optimizer was made) is a ValueError, not silently left as it was: make the
  optimizer after unfreezing.
- A sparse gradient (nn.Embedding(sparse=True)) is a ValueError at the step, as in torch.optim.AdamW.
- config=: a path or a dict (or a list of them) of the configs `blocksharp profile` writes:
  adam_mini, blockwise_lr, sgd_sai; which kinds an optimizer takes is the registry's. A blockwise_lr
  config makes the param groups: one per group, lr = lr * multiplier, keys "group" and "multiplier".
- Each group's "lr" is read at every step, so torch.optim.lr_scheduler works. weight_decay may differ
  between groups; it, betas and eps are fixed at construction (changing them later is a ValueError).
- state_dict() is PyTorch's layout ({"state": {index: {...}}, "param_groups": [...]}) plus a
  "blocksharp" entry; it round-trips through torch.save / torch.load and load_state_dict.
- zero_grad is torch.optim.Optimizer's own. Errors are ValueError with the CLI's one-line messages,
  its flag names translated to these keyword arguments.
- One step count for the whole optimizer (the C++ optimizers' bias corrections use it); a tensor
  without a gradient at a step is skipped, as in PyTorch.
"""
import json
import os

import torch

from . import _core

_REGISTRY = {e["name"]: e for e in _core.optimizers()}

# Registry name -> class name (the names of the papers' code); a new registry entry gets one made up.
_CLASS_NAMES = {"adamw": "AdamW", "adam-mini": "AdamMini", "sgd-sai": "SGDSaI", "apollo": "Apollo",
                "apollo-mini": "ApolloMini", "galore": "GaLore", "frugal": "Frugal", "adapm": "AdaPM",
                "sgd-clip": "SGDClip", "adam-clip": "AdamClip", "torch-adamw": "TorchAdamW"}

def _norm(v):
    """A hyperparameter as compared: betas as a tuple of floats, the rest as a float."""
    return tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else float(v)


def _config_sources(config):
    """(where, JSON text) pairs: a path is read by the C++ side (with its output-set check)."""
    if config is None:
        return []
    items = config if isinstance(config, (list, tuple)) else [config]
    out = []
    for c in items:
        if isinstance(c, (str, os.PathLike)):
            out.append((os.fspath(c), ""))
        elif isinstance(c, dict):
            out.append(("config dict", json.dumps(c)))
        else:
            raise TypeError(f"config: expected a path or a dict, not {type(c).__name__}")
    return out


def _groups_and_names(params):
    """Param groups (dicts, "params" a list of tensors) and each tensor's name (None when unnamed)."""
    if isinstance(params, torch.Tensor):
        raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                        "but got " + torch.typename(params))
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    raw = params if isinstance(params[0], dict) else [{"params": params}]
    groups, names, seen = [], [], set()
    for g in raw:
        if not isinstance(g, dict):
            raise TypeError("param groups must all be dicts")
        g = dict(g)
        ps = g.get("params")
        ps = [ps] if isinstance(ps, torch.Tensor) else list(ps)
        tensors = []
        for p in ps:
            if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str):
                name, t = p
            elif isinstance(p, torch.Tensor):
                name, t = None, p
            else:
                raise TypeError("params must be tensors or (name, tensor) pairs, not " + type(p).__name__)
            if id(t) in seen:
                raise ValueError("some parameters appear in more than one parameter group")
            seen.add(id(t))
            tensors.append(t)
            names.append(name)
        g["params"] = tensors
        groups.append(g)
    return groups, names


class BlocksharpOptimizer(torch.optim.Optimizer):
    """Base of every optimizer here: `optimizer` is the registry name."""

    optimizer = None
    _FIXED = ("betas", "eps", "weight_decay")

    def __init__(self, params, lr=None, betas=None, eps=None, weight_decay=None, *, config=None, dim=0, n_heads=0,
                 n_kv_heads=None, **options):
        entry = _REGISTRY[self.optimizer]
        defaults = {"lr": entry["lr"] if lr is None else float(lr),
                    "betas": tuple(entry["betas"] if betas is None else (float(betas[0]), float(betas[1]))),
                    "eps": entry["eps"] if eps is None else float(eps),
                    "weight_decay": entry["weight_decay"] if weight_decay is None else float(weight_decay)}
        groups, names = _groups_and_names(params)
        configs = _config_sources(config)
        needs_names = entry["needs_partition"] or configs
        if any(n is None for n in names):
            if needs_names and not all(n is None for n in names):
                raise ValueError("params: give every tensor a name (model.named_parameters()) or none")
            if needs_names:
                raise ValueError(f"{self.optimizer} needs parameter names: pass model.named_parameters()")
            names = [f"param{i}" for i in range(len(names))]
        # The C++ optimizer holds the trainable tensors; frozen ones stay in the groups, never stepped.
        trainable, decay, where = [], [], []
        k = 0
        for gi, g in enumerate(groups):
            for key in ("betas", "eps"):
                v = g.get(key, defaults[key])
                if _norm(v) != _norm(defaults[key]):
                    raise ValueError(f"param group {gi}: {key} must be the optimizer's ({defaults[key]}); only lr and "
                                     "weight_decay may differ between groups")
            for t in g["params"]:
                if t.requires_grad:
                    trainable.append(k)
                    decay.append(float(g.get("weight_decay", defaults["weight_decay"])))
                    where.append(gi)
                k += 1
        if not trainable:
            raise ValueError("optimizer: no parameter requires grad")
        flat_t = [t for g in groups for t in g["params"]]
        tensors = [flat_t[i] for i in trainable]
        held = set(trainable)  # the frozen ones, to refuse a gradient they get later (see step)
        self._frozen = [(names[i], t) for i, t in enumerate(flat_t) if i not in held]
        self._names = [names[i] for i in trainable]
        self._core = _core.Optimizer(self.optimizer, self._names, tensors, defaults["lr"],
                           defaults["betas"][0], defaults["betas"][1], defaults["eps"], decay, options, configs,
                           int(dim), int(n_heads), int(n_kv_heads or 0))
        groups_from_config = self._core.groups()
        if groups_from_config:
            if len(groups) > 1 or len(flat_t) != len(tensors):
                raise ValueError("config: a blockwise_lr config makes the param groups; pass the trainable "
                                 "parameters as one list (model.named_parameters()), not groups")
            mult = self._core.multipliers()
            order, by = [], {}
            for i, name in enumerate(groups_from_config):
                if name not in by:
                    by[name] = {"params": [], "lr": defaults["lr"] * mult[i], "group": name, "multiplier": mult[i]}
                    order.append(name)
                by[name]["params"].append(tensors[i])
            groups = [by[n] for n in order]
            index = {id(t): i for i, t in enumerate(tensors)}
            where = [0] * len(tensors)
            for gi, g in enumerate(groups):
                for t in g["params"]:
                    where[index[id(t)]] = gi
            trainable = [0] * len(tensors)
            pos = 0
            for g in groups:
                for t in g["params"]:
                    trainable[index[id(t)]] = pos
                    pos += 1
        self._group_of = where  # per C++ tensor: its param group
        self._flat_index = trainable  # per C++ tensor: its index in PyTorch's state_dict numbering
        self._ready = False
        super().__init__(groups, defaults)
        self._fixed = [{k: g[k] for k in self._FIXED} for g in self.param_groups]
        self._ready = True

    def add_param_group(self, param_group):
        if getattr(self, "_ready", False):
            raise NotImplementedError("blocksharp optimizers take all their parameters at construction")
        super().add_param_group(param_group)

    def _check_fixed(self):
        for gi, (g, f) in enumerate(zip(self.param_groups, self._fixed)):
            for k, v in f.items():
                if _norm(g[k]) != _norm(v):
                    hint = " (OneCycleLR and CyclicLR cycle it unless cycle_momentum=False)" if k == "betas" else ""
                    raise ValueError(f"param group {gi}: {k} changed from {v} to {g[k]}; blocksharp optimizers fix "
                                     f"it at construction (only lr may change){hint}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._check_fixed()
        for name, t in self._frozen:
            if t.grad is not None:
                raise ValueError(f"step: parameter '{name}' was frozen (requires_grad False) when the optimizer was "
                                 "made and has a gradient now; blocksharp optimizers take their trainable parameters "
                                 "at construction: make the optimizer after unfreezing")
        groups = self.param_groups
        self._core.step([float(groups[g]["lr"]) for g in self._group_of])
        return loss

    def state_bytes(self):
        """Bytes of optimizer state (moments, projections), as `blocksharp bench optim` counts them."""
        return self._core.state_bytes()

    def state_dict(self):
        index = {n: i for i, n in enumerate(self._names)}
        state, other = {}, {}
        for key, t in self._core.state_dict():
            i, pos = None, key.find("/")
            while pos >= 0:  # the longest parameter name that prefixes the key
                if key[:pos] in index:
                    i = index[key[:pos]]
                    sub = key[pos + 1:]
                pos = key.find("/", pos + 1)
            if i is None:
                other[key] = t
            else:
                state.setdefault(self._flat_index[i], {})[sub] = t
        groups, start = [], 0
        for g in self.param_groups:
            d = {k: v for k, v in g.items() if k != "params"}
            d["params"] = list(range(start, start + len(g["params"])))
            start += len(g["params"])
            groups.append(d)
        return {"state": state, "param_groups": groups,
                "blocksharp": {"format": "blocksharp.optim/1", "optimizer": self.optimizer, "names": self._names,
                               "other": other}}

    def load_state_dict(self, state_dict):
        bs = state_dict.get("blocksharp", {})
        if bs.get("optimizer") != self.optimizer:
            raise ValueError(f"load_state_dict: the state is of optimizer '{bs.get('optimizer')}', not "
                             f"'{self.optimizer}'")
        if bs.get("names") != self._names:
            raise ValueError("load_state_dict: the state's parameter names differ from this optimizer's")
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)):
            raise ValueError("loaded state dict has a different number of parameter groups or group sizes")
        for gi, (s, f) in enumerate(zip(saved, self._fixed)):
            for k, v in f.items():
                if k in s and _norm(s[k]) != _norm(v):
                    raise ValueError(f"load_state_dict: param group {gi} was saved with {k} {s[k]}, this optimizer "
                                     f"has {v}")
        flat = dict(bs.get("other", {}))
        for i, name in enumerate(self._names):
            for sub, t in state_dict["state"].get(self._flat_index[i], {}).items():
                flat[f"{name}/{sub}"] = t
        self._core.load_state_dict(flat)
        for g, s in zip(self.param_groups, saved):
            for k, v in s.items():
                if k != "params":
                    g[k] = v


def _make(name):
    cls_name = _CLASS_NAMES.get(name) or "".join(w.capitalize() for w in name.replace("_", "-").split("-"))
    e = _REGISTRY[name]
    doc = (f"{e['what']}.\n\nblocksharp's `{name}` (`blocksharp train --optimizer {name}`). Defaults: lr {e['lr']}, "
           f"betas {e['betas']}, eps {e['eps']}, weight_decay {e['weight_decay']}"
           + (f"; {e['other_defaults']}" if e["other_defaults"] else "") + ". Configs: "
           + (", ".join(e["configs"]) or "none") + ".")
    if name in ("sgd-sai", "sgd-clip"):  # the official signatures say momentum=, not betas=
        def __init__(self, params, lr=None, momentum=None, eps=None, weight_decay=None, **kw):
            betas = None if momentum is None else (momentum, _REGISTRY[name]["betas"][1])
            BlocksharpOptimizer.__init__(self, params, lr, kw.pop("betas", betas), eps, weight_decay, **kw)
        body = {"optimizer": name, "__doc__": doc, "__init__": __init__}
    else:
        body = {"optimizer": name, "__doc__": doc}
    return cls_name, type(cls_name, (BlocksharpOptimizer,), body)


__all__ = ["BlocksharpOptimizer", "by_name"]
_BY_NAME = {}
for _name in _REGISTRY:
    _cls_name, _cls = _make(_name)
    globals()[_cls_name] = _cls
    _BY_NAME[_name] = _cls
    __all__.append(_cls_name)


def by_name(name):
    """The class of registry optimizer `name` ("adam-mini" -> AdamMini)."""
    if name not in _BY_NAME:
        raise ValueError(f"optimizer '{name}': unknown (available: {', '.join(_BY_NAME)})")
    return _BY_NAME[name]
