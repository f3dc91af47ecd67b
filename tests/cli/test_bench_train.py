"""`bench train` and `bench optim` on tiny shapes, and train's thread default. Oracles: the PyTorch
script builds the same architecture (parameter counts equal ours) on the same batch (the same token
sum from the same seed); each ratio is the quotient of the figures it is made of; train without
--threads takes every core this process may use, unless OMP_NUM_THREADS decides or --threads is given.
Speed itself is not asserted (a benchmark, not a timed test)."""
import json
import os
import subprocess
import sys

blocksharp, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)


def run(args, env=None):
    r = subprocess.run([blocksharp, *args], capture_output=True, text=True, env=env)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


# bench train: blocksharp (both matrix-product backends) against the PyTorch eager script.
out = json.loads(run(["bench", "train", "--models", "gpt2-tiny,llama-tiny", "--steps", "2", "--rounds", "1",
                      "--batch-size", "2", "--threads", "1"]))
assert out["threads"] == 1, out["threads"]
for model in ("gpt2-tiny", "llama-tiny"):
    m = out["models"][model]
    theirs = m["pytorch_eager"]
    assert theirs["threads"] == 1, theirs
    for key in ("blocksharp", "blocksharp_libtorch_gemm"):
        ours = m[key]
        assert ours["parameters"] == theirs["parameters"], (model, ours["parameters"], theirs["parameters"])
        assert ours["token_sum"] == theirs["token_sum"], (model, ours["token_sum"], theirs["token_sum"])
        assert ours["seq_len"] == theirs["seq_len"] == 64, (ours["seq_len"], theirs["seq_len"])
        ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
        assert abs(ours["tokens_per_s_over_pytorch"] - ratio) <= 1e-12 * ratio, (ours, ratio)
        # One round: its within-round ratio (PyTorch's step over ours, the same tokens) is the best rounds' ratio.
        paired = theirs["step_ms"] / ours["step_ms"]
        assert abs(ours["tokens_per_s_over_pytorch_round_median"] - paired) <= 1e-9 * paired, (ours, paired)
        assert abs(ours["tokens_per_s"] - 2 * 64 / (ours["step_ms"] / 1e3)) <= 1e-9 * ours["tokens_per_s"]
        assert ours["peak_rss_MiB"] >= ours["rss_before_model_MiB"] > 0, ours
        assert 4.0 < ours["last_loss"] < 6.5 and 4.0 < theirs["last_loss"] < 6.5, (ours, theirs)  # near ln 256
    assert "LibTorch" in m["blocksharp_libtorch_gemm"]["gemm"], m["blocksharp_libtorch_gemm"]["gemm"]
    # The same BLAS on both sides: the PyTorch process's library and kernels are the ones our
    # LibTorch-BLAS side names ("LibTorch (OpenBLAS <core>)", or plain "LibTorch" for another BLAS).
    ours_blas = m["blocksharp_libtorch_gemm"]["gemm"]
    if "OpenBLAS" in ours_blas:
        assert ours_blas == "LibTorch (" + theirs["blas"] + ")", (ours_blas, theirs["blas"])
print("bench train: same parameters, tokens and BLAS on both sides, ratios consistent")

# Three rounds: each side's per-round medians in round order, the best of them reported as the step, and
# each round's ratio (PyTorch's step over ours in that round) with their median (Python's statistics).
import statistics  # noqa: E402

m = json.loads(run(["bench", "train", "--models", "gpt2-tiny", "--steps", "2", "--rounds", "3", "--batch-size", "1",
                    "--threads", "1", "--gemm", "onednn"]))["models"]["gpt2-tiny"]
ours, theirs = m["blocksharp"], m["pytorch_eager"]
assert len(ours["step_ms_rounds"]) == len(theirs["step_ms_rounds"]) == 3, (ours, theirs)
assert ours["step_ms"] == min(ours["step_ms_rounds"]) and theirs["step_ms"] == min(theirs["step_ms_rounds"]), m
ratios = [t / o for t, o in zip(theirs["step_ms_rounds"], ours["step_ms_rounds"])]
assert all(abs(a - b) <= 1e-12 * b for a, b in zip(ours["tokens_per_s_over_pytorch_rounds"], ratios)), (ours, ratios)
assert abs(ours["tokens_per_s_over_pytorch_round_median"] - statistics.median(ratios)) <= 1e-12 * max(ratios), ours
print("bench train: three rounds, per-round steps and ratios, their median")

# OPENBLAS_CORETYPE reaches the PyTorch side: both name the kernels it asks for.
if "OpenBLAS" in out["models"]["gpt2-tiny"]["blocksharp_libtorch_gemm"]["gemm"]:
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    m = json.loads(run(["bench", "train", "--models", "gpt2-tiny", "--steps", "1", "--rounds", "1", "--batch-size",
                        "1", "--threads", "1"], env=env))["models"]["gpt2-tiny"]
    assert m["pytorch_eager"]["blas"] == "OpenBLAS Haswell", m["pytorch_eager"]["blas"]
    assert m["blocksharp_libtorch_gemm"]["gemm"] == "LibTorch (OpenBLAS Haswell)", m["blocksharp_libtorch_gemm"]
    print("bench train: OPENBLAS_CORETYPE=Haswell on both sides")

    # Kernels without AVX2 on a CPU with it (Debian's OpenBLAS falls back to Prescott's on CPUs it does
    # not know): one warning on stderr with the result, the same text in the JSON, naming the kernels and
    # the OPENBLAS_CORETYPE of the widest this CPU runs (its flags in /proc/cpuinfo); none on AVX2 ones.
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    args = ["bench", "train", "--models", "gpt2-tiny", "--steps", "1", "--rounds", "1", "--batch-size", "1",
            "--threads", "1", "--python", "none", "--gemm", "libtorch"]
    r = subprocess.run([blocksharp, *args], capture_output=True, text=True,
                       env=dict(os.environ, OPENBLAS_CORETYPE="Prescott"))
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if line.startswith("blocksharp: warning: ")]
    if {"avx2", "fma"} <= flags:
        wider = "SkylakeX" if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags else "Haswell"
        assert len(warned) == 1 and "runs its Prescott kernels" in warned[0], r.stderr
        assert warned[0].endswith("OPENBLAS_CORETYPE=" + wider + " selects wider kernels"), warned[0]
        assert json.loads(r.stdout)["warnings"] == [warned[0][len("blocksharp: warning: "):]], r.stdout
        r = subprocess.run([blocksharp, *args], capture_output=True, text=True,
                           env=dict(os.environ, OPENBLAS_CORETYPE="Haswell"))
        assert r.returncode == 0 and "warning" not in r.stderr and "warnings" not in json.loads(r.stdout), r.stderr
        print("bench train: Prescott's kernels on this CPU warned, once, suggesting " + wider)
    else:
        assert not warned, r.stderr

# Every language-model preset `bench train` takes (the zoo's gpt2 and llama families) is one the PyTorch
# script mirrors, and no other: the choices in --help against the script's PRESETS.
import re  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "experiments"))
import bench_train_pytorch  # noqa: E402

choices = re.search(r"--models TEXT:\{([^}]*)\}", run(["bench", "train", "--help"])).group(1).split(",")
assert sorted(choices) == sorted(bench_train_pytorch.PRESETS), (choices, sorted(bench_train_pytorch.PRESETS))
assert {"gpt2-124m", "gpt2-small-cpu", "llama-small-cpu"} <= set(choices), choices
print("bench train: its model choices are the script's presets")

# Bad input: one line naming the option, before any model is built; a failing script's own last line.
failing = os.path.join(work, "failing.py")
with open(failing, "w") as f:
    f.write('import sys\nsys.exit("no torch on this interpreter")\n')
for args, want in ((["--script", os.path.join(work, "missing.py")], "blocksharp: error: --script"),
                   (["--python", os.path.join(work, "no-python")], "blocksharp: error: --python"),
                   (["--steps", "0"], "blocksharp: error: --steps must be >= 1"),
                   (["--script", failing, "--models", "gpt2-tiny", "--steps", "1", "--rounds", "1", "--gemm", "onednn"],
                    "blocksharp: error: bench train: '" + failing + "' failed (exit 1): no torch on this interpreter")):
    bad = subprocess.run([blocksharp, "bench", "train", *args], capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.startswith(want) and bad.stderr.count("\n") == 1, (args, bad.stderr)
bad = subprocess.run([blocksharp, "bench", "train", "--batch-size", "0"], capture_output=True, text=True)
assert bad.returncode != 0 and bad.stderr == "blocksharp: error: --batch-size must be >= 1, got 0\n", bad.stderr
bad = subprocess.run([blocksharp, "bench", "train", "--models", "gpt2-tiny", "--seq-len", "65", "--python", "none"],
                     capture_output=True, text=True)  # refused before any side's process starts
assert bad.returncode == 1 and bad.stderr == ("blocksharp: error: --seq-len 65 exceeds the context of model "
                                              "'gpt2-tiny' (64)\n"), bad.stderr

# Each round of blocksharp's side is this executable again with the hidden --one-side: one model, one
# backend, one JSON line (the fields the parent reports per round), its own process's memory.
line = run(["bench", "train", "--one-side", "--models", "llama-tiny", "--gemm", "libtorch", "--steps", "2",
            "--batch-size", "2", "--seq-len", "32", "--threads", "1"])
assert line.count("\n") == 1 and line.startswith("{"), line
one = json.loads(line)
assert one["seq_len"] == 32 and one["parameters"] == out["models"]["llama-tiny"]["blocksharp"]["parameters"], one
assert abs(one["tokens_per_s"] - 2 * 32 / (one["step_ms"] / 1e3)) <= 1e-9 * one["tokens_per_s"], one
assert "LibTorch" in one["gemm"] and one["peak_rss_MiB"] >= one["rss_before_model_MiB"] > 0, one
assert "--one-side" not in run(["bench", "train", "--help"])
bad = subprocess.run([blocksharp, "bench", "train", "--one-side", "--models", "gpt2-tiny,llama-tiny"],
                     capture_output=True, text=True)
assert bad.returncode == 1 and bad.stderr == "blocksharp: error: --one-side: give one model and one --gemm backend\n"
# bench optim: each bad value named in one line before any tensor is made (a negative --min-time used
# to abort inside Google Benchmark, --vocab 0 to die of a division by zero).
for args, want in ((["--threads", "1,0"], "--threads: thread counts must be >= 1, got 0"),
                   (["--rounds", "0"], "--rounds must be >= 1, got 0"),
                   (["--paired-steps", "0"], "--paired-steps must be >= 1, got 0"),
                   (["--layers", "-1"], "--layers must be >= 1, got -1"),
                   (["--vocab", "0"], "--vocab must be >= 1, got 0"),
                   (["--dim", "12"], "--dim must be a positive multiple of 8"),
                   (["--min-time", "-1"], "--min-time must be a positive number of seconds"),
                   (["--min-time", "nan"], "--min-time must be a positive number of seconds")):
    bad = subprocess.run([blocksharp, "bench", "optim", *args], capture_output=True, text=True)
    assert (bad.returncode == 1 and bad.stderr.startswith("blocksharp: error: " + want)
            and bad.stderr.count("\n") == 1), (args, bad.returncode, bad.stderr)

# bench optim at two thread counts, each with its own bandwidth baseline and every optimizer.
out = json.loads(run(["bench", "optim", "--threads", "1,2", "--layers", "1", "--dim", "64", "--vocab", "256",
                      "--min-time", "0.01", "--paired-steps", "3", "--rounds", "2"]))
assert out["paired_steps"] == 3 and out["rounds"] == 2, out
assert [r["threads"] for r in out["runs"]] == [1, 2], out["runs"]
for r in out["runs"]:
    # The 3 paired passes are shared out over the 2 rounds, whole passes each: 2 after each round.
    assert r["paired_passes"] == 4, r["paired_passes"]
    assert r["copy_bandwidth_GBps"] == max(r["memcpy_bandwidth_GBps"], r["axpy_bandwidth_GBps"]) > 0
    names = set(r["optimizers"])
    assert names == {"adamw", "torch-adamw", "adam-mini", "sgd-sai", "apollo-mini", "blockwise-adamw", "sgd-clip",
                     "adam-clip"}, names
    adamw = r["optimizers"]["adamw"]
    for name, o in r["optimizers"].items():
        assert abs(o["step_time_over_adamw"] - o["step_ms"] / adamw["step_ms"]) <= 1e-9 * o["step_time_over_adamw"]
        frac = o["bytes_per_step"] / (o["step_ms"] / 1e3) / (r["copy_bandwidth_GBps"] * 1e9)
        assert abs(o["bandwidth_fraction"] - frac) <= 1e-9 * frac, (name, o)
        # Paired steps: the fused cases only (LibTorch's AdamW and APOLLO-Mini allocate temporaries each
        # step, and freeing them slowed the next case's step); AdamW's ratio to itself is 1 in every pass.
        paired = name not in ("torch-adamw", "apollo-mini")
        assert ("step_time_over_adamw_paired_median" in o) == paired and ("paired_step_ms_median" in o) == paired
        if paired:
            assert o["paired_step_ms_median"] > 0 and o["step_time_over_adamw_paired_median"] > 0, (name, o)
    assert adamw["step_time_over_adamw_paired_median"] == 1.0, adamw
    # The floors in words per parameter: AdamW 7, SGDClip 5 + 1 (|g|), AdamClip 7 + 1 (|g|: its default
    # weight decay is 0, so the threshold does not read p).
    per_word = adamw["bytes_per_step"] / 7
    for name, words in (("sgd-clip", 6), ("adam-clip", 8), ("adam-mini", 5), ("sgd-sai", 5)):
        assert abs(r["optimizers"][name]["bytes_per_step"] - words * per_word) <= 1e-9 * words * per_word, name
print("bench optim: runs at 1 and 2 threads, fractions consistent")

# With one round, each fraction's median over rounds is that round's, which is also each one's best.
out = json.loads(run(["bench", "optim", "--threads", "1", "--layers", "1", "--dim", "64", "--vocab", "256",
                      "--min-time", "0.01", "--paired-steps", "1", "--rounds", "1"]))
assert out["runs"][0]["paired_passes"] == 1, out["runs"][0]
for name, o in out["runs"][0]["optimizers"].items():
    assert abs(o["bandwidth_fraction_round_median"] - o["bandwidth_fraction"]) <= 1e-9 * o["bandwidth_fraction"], o
    key = "fraction_of_floor_with_threshold_at_read_speed"
    assert (key in o) == (name in ("sgd-clip", "adam-clip")), (name, o)
    if key in o:
        assert abs(o[key + "_round_median"] - o[key]) <= 1e-9 * o[key], (name, o)
# With one paired pass, each paired fraction is that pass's: the floor (update words at the copy
# bandwidth, the faster of memcpy's 2 and y += x's 3 words per value; the threshold's word at the faster
# read) over the case's step, recomputed here from the pass's times.
r = out["runs"][0]
base = {k: v / 1e3 for k, v in r["paired_baseline_ms_median"].items()}
assert set(base) == {"copy", "axpy", "read", "read4"} and min(base.values()) > 0, base
word = r["optimizers"]["adamw"]["bytes_per_step"] / 7  # 4 bytes per parameter
# A baseline's bandwidth is at least its paired median's: its rounds' time is capped by it.
for key, b, words in (("memcpy_bandwidth_GBps", "copy", 2), ("axpy_bandwidth_GBps", "axpy", 3),
                      ("read_one_stream_GBps", "read", 1), ("read_four_streams_GBps", "read4", 1)):
    assert r[key] * 1e9 >= words * word / base[b] * (1 - 1e-9), (key, r)
copy_bw, read_bw = max(2 * word / base["copy"], 3 * word / base["axpy"]), max(word / base["read"], word / base["read4"])
for name, words, threshold in (("adamw", 7, 0), ("adam-mini", 5, 0), ("sgd-sai", 5, 0), ("blockwise-adamw", 7, 0),
                               ("sgd-clip", 5, 1), ("adam-clip", 7, 1)):
    o = r["optimizers"][name]
    t = o["paired_step_ms_median"] / 1e3
    want = (words + threshold) * word / copy_bw / t
    assert abs(o["bandwidth_fraction_paired_median"] - want) <= 1e-9 * want, (name, o, want)
    key = "fraction_of_floor_with_threshold_at_read_speed_paired_median"
    assert (key in o) == (threshold > 0), (name, o)
    if threshold:
        want = (words * word / copy_bw + threshold * word / read_bw) / t
        assert abs(o[key] - want) <= 1e-9 * want, (name, o, want)
print("bench optim: one round's medians are its fractions, one pass's paired fractions recomputed")

# bench optim --fused-qkv: attention as HF GPT-2's Conv1D c_attn [64, 192] / c_proj, and Adam-mini on the
# slice partition. Oracle for its state (m for every parameter, one v per block), the blocks counted from
# Adam-mini's rules: wte per row 256; ln_1/ln_2/ln_f weights whole 1 each; c_attn sliced: q and k per
# head (8 heads each) and v per output column (64) = 80; c_proj.weight whole 1 (no rule names it); biases
# per element 64 + 192 + 64 + 64 + 256 + 64; fc_in per row 256, fc_out per row 64.
out = json.loads(run(["bench", "optim", "--threads", "1", "--layers", "1", "--dim", "64", "--vocab", "256",
                      "--min-time", "0.01", "--paired-steps", "2", "--fused-qkv"]))
assert out["fused_qkv"] is True and out["tensors"] == 14, out
blocks = 256 + 3 + 80 + 1 + (64 + 192 + 64 + 64 + 256 + 64) + 256 + 64
mini = out["runs"][0]["optimizers"]["adam-mini"]
assert mini["state_bytes"] == 4 * (out["parameters"] + blocks), (mini, out["parameters"], blocks)
print("bench optim --fused-qkv: Conv1D c_attn, Adam-mini's sliced state")

# train's thread default.
env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
cores = len(os.sched_getaffinity(0))
for extra, env_threads, want in (([], None, cores), (["--threads", "1"], None, 1), ([], "1", 1)):
    e = dict(env)
    if env_threads:
        e["OMP_NUM_THREADS"] = env_threads
    d = os.path.join(work, f"threads{len(extra)}{env_threads}")
    run(["train", "--steps", "1", "--eval-batches", "1", "--out", d, *extra], env=e)
    got = json.load(open(os.path.join(d, "train_summary.json")))["threads"]
    assert got == want, (extra, env_threads, got, want)
help_text = run(["train", "--help"])
assert "every core" in help_text, help_text
print(f"train threads: {cores} by default (every core), --threads and OMP_NUM_THREADS decide when given")
