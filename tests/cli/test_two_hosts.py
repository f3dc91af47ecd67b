"""Two hosts on one machine: two network namespaces joined by a veth pair, one rank in each, Gloo on
the veth interface (GLOO_SOCKET_IFNAME). Oracle: the single-process run on the same global batch in
float64 (final parameters equal to 1e-10 relative). Then the link is cut mid-run: both ranks must exit
non-zero with one line within --dist-timeout. Skips, saying why, where namespaces cannot be made (not
root, no CAP_NET_ADMIN, no `ip`). Usage: test_two_hosts.py BLOCKSHARP WORKDIR"""
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

bs, work = sys.argv[1], sys.argv[2]
shutil.rmtree(work, ignore_errors=True)
os.makedirs(work)
tag = str(os.getpid())
NS = [f"bsA{tag}", f"bsB{tag}"]
IF = [f"bva{tag}"[:15], f"bvb{tag}"[:15]]
ADDR = ["10.231.0.1", "10.231.0.2"]


def ip(*args):
    return subprocess.run(["ip"] + list(args), capture_output=True, text=True)


def teardown():
    for ns in NS:
        ip("netns", "del", ns)


def setup():
    if shutil.which("ip") is None:
        return "no `ip` command"
    steps = [("netns", "add", NS[0]), ("netns", "add", NS[1]),
             ("link", "add", IF[0], "type", "veth", "peer", "name", IF[1]),
             ("link", "set", IF[0], "netns", NS[0]), ("link", "set", IF[1], "netns", NS[1])]
    for i in (0, 1):
        steps += [("-n", NS[i], "addr", "add", ADDR[i] + "/24", "dev", IF[i]), ("-n", NS[i], "link", "set", IF[i], "up"),
                  ("-n", NS[i], "link", "set", "lo", "up")]
    for s in steps:
        r = ip(*s)
        if r.returncode != 0:
            teardown()
            return f"`ip {' '.join(s)}` failed: {r.stderr.strip()}"
    return None


why = setup()
if why:
    print(f"SKIP: cannot make two network namespaces here ({why})")
    sys.exit(0)

TINY = ["--model", "gpt2-tiny", "--set", "n_layer=1", "--seq-len", "16", "--dtype", "float64", "--batch-size", "4",
        "--threads", "1"]


def rank_cmd(rank, port, args):
    env = ["env", f"RANK={rank}", "WORLD_SIZE=2", f"MASTER_ADDR={ADDR[0]}", f"MASTER_PORT={port}",
           f"GLOO_SOCKET_IFNAME={IF[rank]}"]
    return ["ip", "netns", "exec", NS[rank]] + env + [bs] + args


def params(path):
    with h5py.File(path) as f:
        return {k: f[k][()] for k in f.keys()}


try:
    train = ["train"] + TINY + ["--steps", "4", "--optimizer", "adam-mini"]
    r = subprocess.run([bs] + train + ["--out", f"{work}/single"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    procs = [subprocess.Popen(rank_cmd(k, 29611, train + ["--dist-timeout", "60", "--out", f"{work}/two"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    a, b = params(f"{work}/single/final_params.h5"), params(f"{work}/two/final_params.h5")
    scale = max(np.max(np.abs(v)) for v in a.values())
    err = max(np.max(np.abs(a[k] - b[k])) for k in a) / scale
    assert a.keys() == b.keys() and err <= 1e-10, err
    print(f"ok   two namespaces over veth == one process (max relative difference {err:.1e})")

    # Cut the link while both train: each rank exits non-zero with one line within the timeout.
    long_run = ["train"] + TINY + ["--steps", "100000", "--dist-timeout", "10", "--out", f"{work}/cut"]
    procs = [subprocess.Popen(rank_cmd(k, 29612, long_run), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for k in (0, 1)]
    time.sleep(6)
    assert all(p.poll() is None for p in procs), "ranks stopped before the cut"
    ip("-n", NS[1], "link", "set", IF[1], "down")
    t0 = time.time()
    errs = [p.communicate(timeout=120)[1] for p in procs]
    took = time.time() - t0
    for k, (p, e) in enumerate(zip(procs, errs)):
        lines = [l for l in e.splitlines() if l.strip()]
        assert p.returncode not in (0, None) and len(lines) == 1 and lines[0].startswith("blocksharp: error:"), (k, p.returncode, e)
        print(f"ok   rank {k} after the cut: rc {p.returncode}, {lines[0][:150]}")
    assert took < 10 + 30, took
    print(f"ok   both ranks gone {took:.1f} s after the cut (--dist-timeout 10)")
finally:
    teardown()
print("1 passed, 0 failed")
