"""Bad input to the CLI: each case must exit non-zero with exactly one line on stderr that names the
culprit, and never crash (no signal, no 'terminate called', no backtrace).
Usage: test_bad_input.py BLOCKSHARP WORKDIR"""
import json
import os
import subprocess
import sys
import time

import h5py
import numpy as np
import torch

blocksharp, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
P = lambda name: os.path.join(work, name)  # noqa: E731

# Inputs for the cases.
with open(P("corrupt.pt"), "wb") as f:
    f.write(b"this is not a zip archive")
with h5py.File(P("no_inputs.h5"), "w") as f:
    f["targets"] = np.zeros(4, dtype=np.int64)
with h5py.File(P("no_targets.h5"), "w") as f:
    f["inputs"] = np.zeros((4, 3))
with h5py.File(P("wrong_shape.h5"), "w") as f:
    f["inputs"] = np.zeros((4, 5))  # the model below takes 3 features
    f["targets"] = np.zeros(4, dtype=np.int64)
with open(P("not_h5.h5"), "w") as f:
    f.write("plain text")
torch.jit.script(torch.nn.Linear(3, 2)).save(P("linear.pt"))  # 8 parameters
with h5py.File(P("no_targets_ok.h5"), "w") as f:
    f["inputs"] = np.random.randn(8, 3)
    f["targets"] = np.zeros(8, dtype=np.int64)
with h5py.File(P("nan.h5"), "w") as f:
    f["inputs"] = np.full((8, 3), np.nan)
    f["targets"] = np.zeros(8, dtype=np.int64)
with open(P("a_file"), "w") as f:
    f.write("x")
class IntOut(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.l(x).long()


torch.jit.script(IntOut()).save(P("int_out.pt"))


class Mha(torch.nn.Module):  # a fused in_proj_weight: --adam-mini slices needs --dim/--n-heads for it
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(3, 4)
        self.attn = torch.nn.MultiheadAttention(4, 2, batch_first=True)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        h = self.up(x).unsqueeze(1)
        return self.head(self.attn(h, h, h, need_weights=False)[0].squeeze(1))


torch.jit.script(Mha()).save(P("mha.pt"))
with open(P("overflow.json"), "w") as f:
    f.write('{"format": "blocksharp.sgd_sai/1", "params": [{"name": "weight", "gsnr": 1e999}]}')
with h5py.File(P("big_ids.h5"), "w") as f:  # token 300 for gpt2-tiny's 256-token vocabulary
    f["inputs"] = np.full((8, 16), 300, dtype=np.int64)
    f["targets"] = np.zeros((8, 16), dtype=np.int64)

train = [blocksharp, "train", "--steps", "2"]

# Checkpoints to spoil: a run stopped at step 1 of 2, then copies with /step -1 and a NaN parameter.
import shutil  # noqa: E402
subprocess.run(train + ["--stop-at", "1", "--out", P("ck")], capture_output=True, check=True)
for tag, spoil in (("ck_step", lambda f: f["step"].write_direct(np.array(-1, dtype=np.int64))),
                   ("ck_nan", lambda f: f["params/wte.weight"].write_direct(np.full(f["params/wte.weight"].shape, np.nan, dtype=np.float32)))):
    shutil.copytree(P("ck"), P(tag), dirs_exist_ok=True)
    with h5py.File(os.path.join(P(tag), "checkpoint.h5"), "r+") as f:
        spoil(f)

# A Hugging Face folder of gpt2-tiny (context 64), for the checkpoint's own --seq-len check.
subprocess.run(train + ["--export-hf", P("hf_tiny"), "--out", P("hf_run")], capture_output=True, check=True)
# ... and one whose config.json asks for dim 65536 (103G parameters) over the same small tensors.
shutil.copytree(P("hf_tiny"), P("hf_huge"), dirs_exist_ok=True)
with open(P("hf_tiny/config.json")) as f:
    huge = json.load(f)
huge["n_embd"] = 65536
with open(P("hf_huge/config.json"), "w") as f:
    json.dump(huge, f)

# Configs: one from a smaller gpt2-tiny (another model for the default gpt2-tiny), one of the wrong kind.
r = subprocess.run([blocksharp, "profile", "--set", "dim=32", "--topk", "2", "--probes", "2", "--density-runs", "0",
                    "--block-eigs", "none", "--out", P("cfg")], capture_output=True, text=True)
assert r.returncode == 0, r.stderr
os.replace(P("cfg/blockwise_lr.json"), P("bw_other.json"))
os.replace(P("cfg/sgd_sai.json"), P("sgd_sai.json"))
with open(P("bw_other.json")) as f, open(P("truncated.json"), "w") as g:
    g.write(f.read()[:200])
with open(P("bw_other.json")) as f:  # found by fuzz_config: a value of the wrong JSON type escaped as nlohmann's
    bw = json.load(f)
bw["params"][0]["group"] = ["not", "a", "string"]
with open(P("bw_type.json"), "w") as g:
    json.dump(bw, g)
cases = [
    ("unknown model", train + ["--model", "gpt5", "--out", P("o1")], "gpt5"),
    ("missing .pt", train + ["--model", P("missing.pt"), "--data", P("no_inputs.h5"), "--out", P("o2")], "missing.pt"),
    ("corrupt .pt", train + ["--model", P("corrupt.pt"), "--data", P("no_inputs.h5"), "--out", P("o3")], "corrupt.pt"),
    ("h5 without /inputs", train + ["--model", P("linear.pt"), "--data", P("no_inputs.h5"), "--out", P("o4")], "/inputs"),
    ("h5 without /targets", train + ["--model", P("linear.pt"), "--data", P("no_targets.h5"), "--out", P("o5")], "/targets"),
    ("not an h5 file", train + ["--model", P("linear.pt"), "--data", P("not_h5.h5"), "--out", P("o6")], "not_h5.h5"),
    ("inputs the model rejects", train + ["--model", P("linear.pt"), "--data", P("wrong_shape.h5"), "--out", P("o7")], "wrong_shape.h5"),
    ("unknown --set key", train + ["--set", "depth=4", "--out", P("o8")], "depth"),
    ("bad --set value", train + ["--set", "n_layer=two", "--out", P("o9")], "n_layer"),
    ("non-writable --out", train + ["--out", P("a_file") + "/sub"], "--out"),
    ("non-writable --export-hf", train + ["--export-hf", P("a_file") + "/hf", "--out", P("o37")], "--export-hf"),
    ("unknown data", train + ["--data", "imagenet", "--out", P("o10")], "imagenet"),
    ("invalid hyperparameter", train + ["--lr", "-1", "--out", P("o11")], "--lr"),
    ("unknown optimizer", train + ["--optimizer", "lion", "--out", P("o12")], "lion"),
    ("unknown mode word", train + ["--on-nonfinite", "ignore", "--out", P("o40")], "--on-nonfinite"),
    ("profile: unknown --method", [blocksharp, "profile", "--method", "arnoldi", "--out", P("o41")], "arnoldi"),
    ("non-positive --rank", train + ["--optimizer", "galore", "--rank", "0", "--out", P("o42")], "--rank"),
    ("bad dtype", train + ["--dtype", "float16", "--out", P("o13")], "--dtype"),
    ("profile: topk >= parameters", [blocksharp, "profile", "--model", P("linear.pt"), "--data", P("no_targets_ok.h5"),
                                     "--topk", "8", "--out", P("o14")], "--topk"),
    ("structure: unknown parameter", [blocksharp, "structure", "--param", "h.9.attn.q_proj.weight",
                                      "--out", P("o15")], "h.9.attn.q_proj.weight"),
    ("train: config of the wrong kind", train + ["--config", P("sgd_sai.json"), "--out", P("o17")], "sgd_sai.json"),
    ("train: config for another model", train + ["--config", P("bw_other.json"), "--out", P("o18")], "bw_other.json"),
    ("train: truncated config", train + ["--config", P("truncated.json"), "--out", P("o19")], "truncated.json"),
    ("config check: another model", [blocksharp, "config", "check", P("bw_other.json")], "bw_other.json"),
    ("profile: non-finite loss", [blocksharp, "profile", "--model", P("linear.pt"), "--data", P("nan.h5"),
                                  "--out", P("o16")], "batch 0"),
    ("unknown BLOCKSHARP_GEMM", train + ["--out", P("o20")], "BLOCKSHARP_GEMM", {"BLOCKSHARP_GEMM": "mkl"}),
    # Refused before any product: a run that cannot fit in memory, with the estimate.
    # (the model and a batch's activations fit 6 MB, about 4 MiB; the eigensolver's vectors do not)
    ("profile: does not fit memory", [blocksharp, "profile", "--out", P("o21")], "for the eigensolver",
     {"BLOCKSHARP_MEMORY_BUDGET": "6000000"}),
    # A mistyped size is refused from its closed-form parameter count before the model is built (it
    # took 17-20 GB and ran past a minute before), and a zero dim before LibTorch sees it.
    ("model larger than memory", train + ["--set", "dim=65536", "--out", P("o43")],
     "--set dim=65536: a gpt2 model of 103.1G parameters at --batch-size 8 of 64 tokens needs"),
    ("hf: config.json larger than memory", train + ["--model", "hf:" + P("hf_huge"), "--out", P("o44")],
     P("hf_huge") + "/config.json': a gpt2 model of"),
    ("--set dim=0", train + ["--set", "dim=0", "--out", P("o45")], "dim and n_heads must be positive"),
    ("malformed BLOCKSHARP_MEMORY_BUDGET", train + ["--out", P("o38")], "BLOCKSHARP_MEMORY_BUDGET", {"BLOCKSHARP_MEMORY_BUDGET": "lots"}),
    ("profile: --probes 0", [blocksharp, "profile", "--probes", "0", "--out", P("o22")], "--probes"),
    ("profile: hutch++ probes", [blocksharp, "profile", "--probes", "2", "--trace-estimator", "hutch++", "--out", P("o23")],
     "hutch++"),
    ("--seq-len beyond the context", train + ["--seq-len", "65", "--out", P("o24")], "--set seq_len=65"),
    ("negative --seq-len", train + ["--seq-len", "-5", "--out", P("o24n")], "--seq-len must be >= 0"),
    ("negative --eval-batches", train + ["--eval-batches", "-1", "--out", P("o24e")], "--eval-batches must be >= 0"),
    ("negative --checkpoint-every", train + ["--checkpoint-every", "-2", "--out", P("o24c")],
     "--checkpoint-every must be >= 0"),
    ("hf: folder without config", train + ["--model", "hf:" + P("o1"), "--out", P("o25")], "config.json"),
    ("hf: --seq-len beyond the context", train + ["--model", "hf:" + P("hf_tiny"), "--seq-len", "65", "--out", P("o25s")],
     "--seq-len 65 exceeds the context of 'hf:" + P("hf_tiny") + "' (64)"),
    ("--resume with --params", train + ["--resume", "--params", P("a_file"), "--out", P("ck")], "--params would be ignored"),
    ("garbage --params", train + ["--params", P("a_file"), "--out", P("o28")], "a_file"),
    ("checkpoint /step -1", train + ["--resume", "--out", P("ck_step")], "/step -1"),
    ("checkpoint with NaN", train + ["--resume", "--out", P("ck_nan")], "NaN"),
    ("--stop-at below the checkpoint", train + ["--resume", "--stop-at", "1", "--out", P("ck")], "--stop-at 1"),
    ("vocab below the tokenizer's", train + ["--set", "vocab=10", "--out", P("o29")], "vocab=10"),
    ("token id past the vocabulary", train + ["--data", P("big_ids.h5"), "--out", P("o30")], "token id 300"),
    ("--val-data with built-in data", train + ["--val-data", P("no_targets_ok.h5"), "--out", P("o31")], "--val-data"),
    ("--val-data rows of another shape", train + ["--model", P("linear.pt"), "--data", P("no_targets_ok.h5"),
                                                  "--val-data", P("wrong_shape.h5"), "--out", P("o32")], "wrong_shape.h5"),
    ("--val-data missing", train + ["--model", P("linear.pt"), "--data", P("no_targets_ok.h5"),
                                    "--val-data", P("missing.h5"), "--out", P("o33")], "missing.h5"),
    ("model returns integers", train + ["--model", P("int_out.pt"), "--data", P("no_targets_ok.h5"),
                                        "--out", P("o34")], "Long"),
    ("config value of the wrong JSON type", [blocksharp, "config", "check", "--set", "dim=32", P("bw_type.json")],
     'bw_type.json\': params entry \'%s\': key "group" must be a string' % bw["params"][0]["name"]),
    ("--adam-mini slices without head sizes", [blocksharp, "profile", "--model", P("mha.pt"), "--data", P("no_targets_ok.h5"),
                                              "--adam-mini", "slices", "--out", P("o36")], "--n-heads"),
    ("JSON number overflow", [blocksharp, "config", "show", P("overflow.json")], "overflow.json"),
    # found by fuzz_h5: HDF5 threw from a name lookup in a damaged file, outside any handler
    ("damaged .h5 (fuzzer finding)", train + ["--data", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz",
                                              "corpus", "fuzz_h5", "regress-name-exists-throws.h5"), "--out", P("o35")],
     "regress-name-exists-throws.h5"),
    ("CLI11 parse error", train + ["--steps", "many", "--out", P("o26")], "--steps"),
    # bench hvp: checked before any model is built (--repeats 0 crashed on an empty median)
    ("bench hvp --repeats 0", [blocksharp, "bench", "hvp", "--models", "gpt2-tiny", "--repeats", "0"], "--repeats"),
    ("bench hvp --probes 0", [blocksharp, "bench", "hvp", "--models", "gpt2-tiny", "--probes", "0"], "--probes"),
    ("bench hvp --power-tol nan", [blocksharp, "bench", "hvp", "--models", "gpt2-tiny", "--power-tol", "nan"],
     "--power-tol"),
    ("bench hvp --seq-len -1", [blocksharp, "bench", "hvp", "--models", "gpt2-tiny", "--seq-len", "-1"], "--seq-len"),
    ("bench dist --ranks 1 0", [blocksharp, "bench", "dist", "--model", "gpt2-tiny", "--ranks", "1", "0", "--out",
                                P("bd1")], "--ranks"),
    ("bench dist --ranks 1 3", [blocksharp, "bench", "dist", "--model", "gpt2-tiny", "--ranks", "1", "3", "--out",
                                P("bd2")], "--batch-size 8 is not divisible by 3"),
    ("bench dist --ranks 1,3", [blocksharp, "bench", "dist", "--model", "gpt2-tiny", "--ranks", "1,3", "--out",
                                P("bd4")], "--batch-size 8 is not divisible by 3"),  # commas, as bench optim --threads
    ("bench dist --threads -1", [blocksharp, "bench", "dist", "--model", "gpt2-tiny", "--threads", "-1", "--out",
                                 P("bd3")], "--threads"),
    ("launch of a benchmark", [blocksharp, "launch", "-n", "2", "--", "bench", "optim"], "'bench' runs in one process"),
    ("launch of launch", [blocksharp, "launch", "-n", "2", "--", "launch", "train"], "'launch' runs in one process"),
    ("bench hvp unknown model", [blocksharp, "bench", "hvp", "--models", "gpt2-tiny,gpt5"], "--models: 'gpt5'"),
    ("bench hvp TorchScript model", [blocksharp, "bench", "hvp", "--models", P("linear.pt")], "built-in models only"),
    ("unknown flag", train + ["--no-such-flag", "--out", P("o27")], "--no-such-flag"),
]
failed = 0
for name, cmd, culprit, *env in cases:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **(env[0] if env else {})})
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    problems = []
    if r.returncode == 0:
        problems.append("exit code 0")
    if r.returncode < 0:
        problems.append(f"killed by signal {-r.returncode}")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines")
    if culprit not in r.stderr:
        problems.append(f"culprit '{culprit}' not named")
    for bad in ("terminate called", "Exception raised from", "Traceback", "frame #"):
        if bad in r.stderr:
            problems.append(f"'{bad}' in stderr")
    status = "ok" if not problems else "FAIL: " + "; ".join(problems)
    print(f"{name:28s} rc={r.returncode:<3d} {status}\n    {r.stderr.strip()[:300]}")
    failed += bool(problems)

# A refused run leaves no --out folder it created (before: an empty folder holding the lock file), nested
# ones included; a folder that was there stays.
os.makedirs(P("was_there"), exist_ok=True)
r1 = subprocess.run(train + ["--model", "gpt5", "--out", P("new/nested/out")], capture_output=True, text=True)
r2 = subprocess.run(train + ["--model", "gpt5", "--out", P("was_there")], capture_output=True, text=True)
left = [o for o in ("o8", "o9", "o43", "o44", "o45", "new") if os.path.exists(P(o))]
ok = r1.returncode == 1 and r2.returncode == 1 and not left and os.path.isdir(P("was_there"))
print(f"{'refused runs leave no --out':28s} {'ok' if ok else 'FAIL'} left: {left}")
cases.append(("refused runs leave no --out",))
failed += not ok

# A write that fails (here: the file-size limit, as a full disk would) is one line naming the file, and
# leaves no temporary file behind.
def small_files():
    import resource
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


out = P("o_full")
r = subprocess.run(train + ["--out", out], capture_output=True, text=True, timeout=120, preexec_fn=small_files)
lines = [l for l in r.stderr.splitlines() if l.strip()]
left = [f for f in os.listdir(out) if ".tmp" in f] if os.path.isdir(out) else []
ok = r.returncode == 1 and len(lines) == 1 and "final_params.h5" in lines[0] and lines[0].startswith("blocksharp: error:") \
    and not left and not os.path.exists(os.path.join(out, "final_params.h5"))
print(f"{'write failure':28s} rc={r.returncode:<3d} {'ok' if ok else 'FAIL'} {left}\n    {r.stderr.strip()[:300]}")
cases.append(("write failure",))
failed += not ok

# A second process writing the same --out is refused while the first holds it.
busy = P("busy")
shutil.rmtree(busy, ignore_errors=True)
first = subprocess.Popen(train[:2] + ["--steps", "100000", "--out", busy], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
lock = os.path.join(busy, ".blocksharp.lock")
for _ in range(300):  # until the first holds the lock (it writes its pid there)
    if os.path.exists(lock) and open(lock).read() == str(first.pid):
        break
    time.sleep(0.1)
r = subprocess.run(train + ["--out", busy], capture_output=True, text=True, timeout=120)
first.kill()
first.wait()
lines = [l for l in r.stderr.splitlines() if l.strip()]
ok = r.returncode == 1 and len(lines) == 1 and "in use by another blocksharp process" in lines[0]
print(f"{'second writer of one --out':28s} rc={r.returncode:<3d} {'ok' if ok else 'FAIL'}\n    {r.stderr.strip()[:200]}")
cases.append(("second writer",))
failed += not ok

# Resuming a finished run changes nothing and says so.
fin = P("finished")
subprocess.run(train + ["--checkpoint-every", "1", "--out", fin], capture_output=True, check=True)
before = {n: open(os.path.join(fin, n), "rb").read() for n in ("train_summary.json", "final_params.h5")}
r = subprocess.run(train + ["--checkpoint-every", "1", "--resume", "--out", fin], capture_output=True, text=True)
after = {n: open(os.path.join(fin, n), "rb").read() for n in before}
ok = r.returncode == 0 and "already finished" in r.stdout and before == after
print(f"{'resume of a finished run':28s} rc={r.returncode:<3d} {'ok' if ok else 'FAIL'}\n    {r.stdout.strip()[:200]}")
cases.append(("resume of a finished run",))
failed += not ok

# --val-data: the validation loss of .h5 training is the loss of the final parameters on those rows
# (oracle: PyTorch's cross-entropy of the same Linear); without it no validation loss is claimed.
with h5py.File(P("val.h5"), "w") as f:
    f["inputs"] = np.random.RandomState(3).randn(16, 3)
    f["targets"] = np.random.RandomState(4).randint(0, 2, 16)
lin = [blocksharp, "train", "--model", P("linear.pt"), "--data", P("no_targets_ok.h5"), "--steps", "3", "--dtype", "float64"]
r = subprocess.run(lin + ["--val-data", P("val.h5"), "--out", P("val")], capture_output=True, text=True)
ok = r.returncode == 0
if ok:
    summary = json.load(open(P("val/train_summary.json")))
    with h5py.File(P("val/final_params.h5")) as f, h5py.File(P("val.h5")) as v:
        w, b = torch.tensor(f["weight"][()]), torch.tensor(f["bias"][()])
        x, y = torch.tensor(v["inputs"][()]), torch.tensor(v["targets"][()])
    ref = torch.nn.functional.cross_entropy(x @ w.T + b, y).item()  # two batches of 8: equal weights
    ok = abs(summary["final_val_loss"] - ref) < 1e-9 and "val_loss" in r.stdout
r2 = subprocess.run(lin + ["--out", P("noval")], capture_output=True, text=True)
ok = ok and r2.returncode == 0 and "val_loss" not in r2.stdout and json.load(open(P("noval/train_summary.json")))["final_val_loss"] is None
print(f"{'--val-data loss':28s} {'ok' if ok else 'FAIL'}\n    {r.stdout.strip()[-120:]} {r.stderr.strip()[:200]}")
cases.append(("--val-data loss",))
failed += not ok
# More --threads than the cores: the run goes on, said once on stderr (bench train's sides, processes of
# their own given the count, say nothing more), and a benchmark's figures are not taken for what they are not.
over = str(len(os.sched_getaffinity(0)) + 1)
for label, cmd in (("train", [blocksharp, "train", "--steps", "1", "--out", P("over")]),
                   ("bench train", [blocksharp, "bench", "train", "--python", "none", "--models", "gpt2-tiny",
                                    "--steps", "1", "--rounds", "1"]),
                   ("bench optim", [blocksharp, "bench", "optim", "--layers", "1", "--vocab", "64", "--dim", "8",
                                    "--rounds", "1", "--min-time", "0.01", "--paired-steps", "1"])):
    r = subprocess.run(cmd + ["--threads", over], capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    ok = r.returncode == 0 and len(lines) == 1 and lines[0].startswith(f"blocksharp: warning: --threads {over} is more")
    print(f"{'threads beyond cores: ' + label:28s} rc={r.returncode:<3d} {'ok' if ok else 'FAIL'}\n    {r.stderr.strip()[:300]}")
    cases.append((label,))
    failed += not ok
print(f"{len(cases) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
