"""Writes the fuzzers' seed corpus (committed in tests/fuzz/corpus/<harness>/): valid inputs for the
model the harnesses read against (gpt2-tiny, n_layer=1 dim=8 n_heads=2 seq_len=4 vocab=16), made by
blocksharp itself and by the safetensors specification. Usage: make_corpus.py BLOCKSHARP"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np

bs = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
tmp = tempfile.mkdtemp()
model = ["--model", "gpt2-tiny", "--set", "n_layer=1", "--set", "dim=8", "--set", "n_heads=2", "--set", "seq_len=4",
         "--set", "vocab=16", "--batch-size", "2", "--threads", "1"]
corpus = {k: os.path.join(here, "corpus", k) for k in ("fuzz_safetensors", "fuzz_config", "fuzz_h5")}
for d in corpus.values():  # regenerate the seeds; keep the fuzzers' regression inputs (regress-*)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        if not name.startswith("regress-"):
            os.remove(os.path.join(d, name))

data = os.path.join(corpus["fuzz_h5"], "data.h5")
rng = np.random.RandomState(0)
with h5py.File(data, "w") as f:
    f["inputs"] = rng.randint(0, 16, (4, 4))
    f["targets"] = rng.randint(0, 16, (4, 4))
    f["val_inputs"] = rng.randint(0, 16, (2, 4))
    f["val_targets"] = rng.randint(0, 16, (2, 4))
run = lambda *a: subprocess.run([bs, *a], check=True, capture_output=True)  # noqa: E731
run("profile", *model, "--data", data, "--topk", "1", "--probes", "3", "--density-runs", "0", "--block-eigs", "none",
    "--tol", "1e-3", "--out", tmp + "/p")
for name in ("adam_mini.json", "blockwise_lr.json", "sgd_sai.json"):
    j = json.load(open(os.path.join(tmp, "p", name)))
    j.pop("set_id")  # a config standing alone (no manifest beside the fuzzer's file)
    json.dump(j, open(os.path.join(corpus["fuzz_config"], name), "w"))
run("train", *model, "--data", data, "--steps", "2", "--stop-at", "1", "--checkpoint-every", "1", "--out", tmp + "/t")
shutil.copy(os.path.join(tmp, "t", "checkpoint.h5"), os.path.join(corpus["fuzz_h5"], "checkpoint.h5"))
run("train", *model, "--data", data, "--steps", "1", "--out", tmp + "/f")
shutil.copy(os.path.join(tmp, "f", "final_params.h5"), os.path.join(corpus["fuzz_h5"], "final_params.h5"))


def safetensors(path, tensors, meta=None):
    header, offset, blobs = {}, 0, []
    for name, (dtype, arr) in tensors.items():
        b = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


safetensors(os.path.join(corpus["fuzz_safetensors"], "mixed.safetensors"),
            {"a": ("F32", np.arange(6, dtype=np.float32).reshape(2, 3)), "b": ("F16", np.ones(4, dtype=np.float16)),
             "c": ("I64", np.arange(3, dtype=np.int64)), "d": ("BF16", np.zeros(2, dtype=np.uint16)),
             "e": ("BOOL", np.array([1, 0], dtype=np.uint8)), "f": ("F64", np.zeros((0, 2)))}, {"format": "pt"})
safetensors(os.path.join(corpus["fuzz_safetensors"], "empty.safetensors"), {})
shutil.rmtree(tmp)
for k, d in corpus.items():
    print(k, sorted((n, os.path.getsize(os.path.join(d, n))) for n in os.listdir(d)))
