"""Hugging Face checkpoints in and out. Python writes GPT-2 checkpoints by the safetensors specification
(8-byte little-endian header length, JSON header, byte buffer) with HF's names and Conv1D layout, whole
and sharded, in float32 and float16; `--model hf:DIR` must give the loss PyTorch gives on the same
weights in HF's layout (1e-6, float32). `train --export-hf` must write the same tensors back (exact),
and a LLaMA export must load again to the same loss. Malformed files must be refused in one line.
Usage: test_hf_checkpoints.py BLOCKSHARP WORKDIR"""
import json
import os
import struct
import subprocess
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from hf_models import HfGpt2, hf_llama_logits  # noqa: E402

blocksharp, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
failures = []
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.float64: "F64", torch.bfloat16: "BF16"}


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def header_and_buffer(tensors):
    header, chunks, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype == torch.bfloat16 else t.contiguous().numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    return header, b"".join(chunks)


def write_st(path, tensors=None, header=None, buffer=b"", pad=True, raw_header=None):
    if tensors is not None:
        header, buffer = header_and_buffer(tensors)
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + buffer)


def read_st(path):
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        dt = {"F32": np.float32, "F64": np.float64, "F16": np.float16}[e["dtype"]]
        out[name] = torch.from_numpy(np.frombuffer(blob[8 + n + b:8 + n + end], dtype=dt).copy()).view(e["shape"])
    return out


def run(args, expect_ok=True):
    r = subprocess.run([blocksharp] + args, capture_output=True, text=True)
    if expect_ok and r.returncode != 0:
        raise SystemExit(f"blocksharp {' '.join(args)} failed: {r.stderr}")
    return r


def hf_state(model):
    """What save_pretrained stores: every parameter once (the tied head under transformer.wte.weight)."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


CFG = {"model_type": "gpt2", "n_embd": 16, "n_head": 2, "n_layer": 2, "n_positions": 32, "vocab_size": 256,
       "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "tie_word_embeddings": True}
torch.manual_seed(11)
model = HfGpt2(vocab=256, n_positions=32, dim=16, heads=2, n_layer=2).float()
B, T = 4, 12
x, y = torch.randint(0, 256, (8, T)), torch.randint(0, 256, (8, T))
data = os.path.join(work, "tokens.h5")
with h5py.File(data, "w") as f:
    f["inputs"], f["targets"] = x.numpy(), y.numpy()


def loss_of(m):
    with torch.no_grad():
        out = m(x[:B])
        return F.cross_entropy(out.reshape(-1, out.size(-1)), y[:B].reshape(-1)).item()


def blocksharp_loss(spec, extra=()):
    out = os.path.join(work, "p-" + os.path.basename(spec.rstrip("/")))
    run(["profile", "--model", spec, "--data", data, "--batch-size", str(B), "--topk", "1", "--probes", "2",
         "--density-runs", "0", "--block-eigs", "none", "--gn-samples", "0", "--out", out, *extra])
    with h5py.File(os.path.join(out, "profile.h5")) as f:
        return float(f["/global/loss"][()])


def write_checkpoint(d, tensors, cfg=CFG, shards=1):
    os.makedirs(d, exist_ok=True)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    if shards == 1:
        write_st(os.path.join(d, "model.safetensors"), tensors)
        return
    names, weight_map = list(tensors), {}
    for s in range(shards):
        part = names[s::shards]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        write_st(os.path.join(d, fname), {n: tensors[n] for n in part})
        weight_map.update({n: fname for n in part})
    json.dump({"metadata": {}, "weight_map": weight_map}, open(os.path.join(d, "model.safetensors.index.json"), "w"))


# 1. float32, whole and sharded: the loss of the same weights in PyTorch's HF layout.
state = hf_state(model)
ref = loss_of(model)
for tag, shards in (("whole", 1), ("sharded", 3)):
    d = os.path.join(work, f"gpt2-{tag}")
    write_checkpoint(d, state, shards=shards)
    got = blocksharp_loss("hf:" + d)
    check(abs(got - ref) <= 1e-6 * abs(ref), f"hf:{tag} float32 loss {got:.8f} vs PyTorch {ref:.8f}")

# 2. float16 and bfloat16 storage: converted on load; the oracle is PyTorch on the rounded weights.
for low in (torch.float16, torch.bfloat16):
    rounded_state = {n: t.to(low) for n, t in state.items()}
    dlow = os.path.join(work, f"gpt2-{str(low).split('.')[-1]}")
    write_checkpoint(dlow, rounded_state)
    rounded = HfGpt2(vocab=256, n_positions=32, dim=16, heads=2, n_layer=2).float()
    with torch.no_grad():
        for n, p in rounded.named_parameters():
            p.copy_(rounded_state[n].float())
    ref_low = loss_of(rounded)
    got_low = blocksharp_loss("hf:" + dlow)
    check(abs(got_low - ref_low) <= 1e-6 * abs(ref_low), f"hf: {low} loss {got_low:.8f} vs PyTorch {ref_low:.8f}")

# 3. Export: a 1e-30 lr step leaves float32 weights as they are (below half an ulp); --export-hf writes them back in HF's layout, exactly.
exp = os.path.join(work, "exported")
run(["train", "--model", "hf:" + os.path.join(work, "gpt2-whole"), "--data", data, "--batch-size", str(B),
     "--steps", "1", "--lr", "1e-30", "--weight-decay", "0", "--warmup", "0", "--schedule", "constant",
     "--eval-batches", "1", "--out", os.path.join(work, "train-export"), "--export-hf", exp])
back = read_st(os.path.join(exp, "model.safetensors"))
check(set(back) == set(state), f"export names are HF's, tied head once: {sorted(set(back) ^ set(state))}")
worst = max(((back[n] - state[n]).abs().max().item() for n in state if n in back), default=1.0)
check(worst == 0.0, f"export reproduces every tensor exactly (worst difference {worst})")
cfg_back = json.load(open(os.path.join(exp, "config.json")))
check(all(cfg_back[k] == CFG[k] for k in ("n_embd", "n_head", "n_layer", "n_positions", "vocab_size", "tie_word_embeddings")),
      "exported config.json has the model's sizes")

# 4. LLaMA: a built-in llama exported to HF's layout loads again to the same loss.
lexp = os.path.join(work, "llama-export")
run(["train", "--model", "llama-tiny", "--set", "n_layer=1", "--data", data, "--batch-size", str(B), "--steps", "2",
     "--warmup", "0", "--eval-batches", "1", "--out", os.path.join(work, "train-llama"), "--export-hf", lexp])
lcfg = json.load(open(os.path.join(lexp, "config.json")))
lnames = set(read_st(os.path.join(lexp, "model.safetensors")))
check(lcfg["model_type"] == "llama" and "model.layers.0.self_attn.q_proj.weight" in lnames and "model.norm.weight" in lnames,
      "llama export uses HF's model.* names")
l_direct = blocksharp_loss("llama-tiny", ["--set", "n_layer=1", "--params", os.path.join(work, "train-llama", "final_params.h5")])
l_hf = blocksharp_loss("hf:" + lexp)
check(abs(l_direct - l_hf) <= 1e-7 * abs(l_direct), f"llama hf round trip loss {l_hf:.8f} vs {l_direct:.8f}")

# 4b. LLaMA in HF's layout written here (GQA 4 / 2 heads, untied head, random RMSNorm weights):
# the loss of PyTorch's LlamaForCausalLM forward on the same weights.
torch.manual_seed(12)
LC = {"model_type": "llama", "hidden_size": 16, "num_attention_heads": 4, "num_key_value_heads": 2,
      "num_hidden_layers": 2, "intermediate_size": 40, "vocab_size": 256, "max_position_embeddings": 32,
      "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False}
lw = {"model.embed_tokens.weight": torch.randn(256, 16) * 0.5, "model.norm.weight": 1 + 0.1 * torch.randn(16),
      "lm_head.weight": torch.randn(256, 16) * 0.3}
for i in range(2):
    pre = f"model.layers.{i}."
    for n, shape in (("self_attn.q_proj", (16, 16)), ("self_attn.k_proj", (8, 16)), ("self_attn.v_proj", (8, 16)),
                     ("self_attn.o_proj", (16, 16)), ("mlp.gate_proj", (40, 16)), ("mlp.up_proj", (40, 16)),
                     ("mlp.down_proj", (16, 40))):
        lw[pre + n + ".weight"] = torch.randn(*shape) * 0.3
    lw[pre + "input_layernorm.weight"] = 1 + 0.1 * torch.randn(16)
    lw[pre + "post_attention_layernorm.weight"] = 1 + 0.1 * torch.randn(16)
dl = os.path.join(work, "llama-hf")
write_checkpoint(dl, lw, cfg=LC, shards=2)
with torch.no_grad():
    out = hf_llama_logits(lw, x[:B], 4, 2, 2)
    lref = F.cross_entropy(out.reshape(-1, 256), y[:B].reshape(-1)).item()
lgot = blocksharp_loss("hf:" + dl)
check(abs(lgot - lref) <= 1e-6 * abs(lref), f"hf: llama (GQA, sharded) loss {lgot:.8f} vs PyTorch {lref:.8f}")
bad_theta = os.path.join(work, "llama-theta")
write_checkpoint(bad_theta, lw, cfg={**LC, "rope_theta": 500000.0})
r = run(["profile", "--model", "hf:" + bad_theta, "--data", data, "--out", bad_theta + "-out"], expect_ok=False)
check(r.returncode == 1 and "rope_theta" in r.stderr, f"an unimplemented config value is refused: {r.stderr.strip()}")

# 5. Malformed files: one line, blocksharp: error:, naming the file; never a crash.
good_header, good_buffer = header_and_buffer({"a": torch.zeros(2, 2), "b": torch.zeros(3)})
cases = {
    "header length past the end": dict(raw_header=b"{}", header=None, pad=False, buffer=b"", length=1 << 40),
    "not JSON": dict(raw_header=b"{not json", buffer=b""),
    "JSON but not an object": dict(raw_header=b"[1, 2]", buffer=b""),
    "offsets out of range": dict(header={"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 64]}}, buffer=b"\0" * 8),
    "overlapping offsets": dict(header={"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, buffer=b"\0" * 12),
    "hole in the buffer": dict(header={"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, buffer=b"\0" * 8),
    "size does not fit shape": dict(header={"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, buffer=b"\0" * 8),
    "unknown dtype": dict(header={"a": {"dtype": "F7", "shape": [2], "data_offsets": [0, 8]}}, buffer=b"\0" * 8),
    "negative shape": dict(header={"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, buffer=b"\0" * 8),
    "duplicate names": dict(raw_header=b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                       b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', buffer=b"\0" * 8),
    "shape overflow": dict(header={"a": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 8]}}, buffer=b"\0" * 8),
    "truncated file": dict(raw_header=None, header=good_header, buffer=good_buffer[:-4]),
}
for what, kw in cases.items():
    d = os.path.join(work, "bad-" + what.replace(" ", "-"))
    os.makedirs(d, exist_ok=True)
    json.dump(CFG, open(os.path.join(d, "config.json"), "w"))
    path = os.path.join(d, "model.safetensors")
    length = kw.pop("length", None)
    write_st(path, header=kw.get("header"), buffer=kw.get("buffer", b""), pad=kw.get("pad", True),
             raw_header=kw.get("raw_header"))
    if length is not None:
        with open(path, "r+b") as f:
            f.write(struct.pack("<Q", length))
    r = run(["profile", "--model", "hf:" + d, "--data", data, "--batch-size", str(B), "--out", d + "-out"], expect_ok=False)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 1 and len(lines) == 1 and lines[0].startswith("blocksharp: error:") and "model.safetensors" in lines[0],
          f"malformed ({what}): {lines[:2]}")
# A checkpoint of another shape is refused naming the tensor.
d = os.path.join(work, "bad-shape")
write_checkpoint(d, {**state, "transformer.wpe.weight": torch.zeros(7, 16)})
r = run(["profile", "--model", "hf:" + d, "--data", data, "--batch-size", str(B), "--out", d + "-out"], expect_ok=False)
check(r.returncode == 1 and "wpe.weight" in r.stderr, f"shape mismatch: {r.stderr.strip()}")

print(f"{0 if failures else 1} passed, {1 if failures else 0} failed")
sys.exit(1 if failures else 0)
