"""What the tests of the executable's environment switches (BLOCKSHARP_HUGE_PAGES, BLOCKSHARP_LARGE_BLOCKS)
share: a short training run's datasets (final parameters and sharpness trace), to be compared bit for bit
between a switch's settings, and the one-line error a bad value must give."""
import os
import subprocess

import h5py
import numpy as np


def train_datasets(blocksharp, out, env, extra=()):
    """Trains gpt2-tiny (1 layer, 6 steps, a trace every 3) into `out` under `env`; every dataset of
    final_params.h5 and trace.h5 by name."""
    r = subprocess.run([blocksharp, "train", "--model", "gpt2-tiny", "--set", "n_layer=1", *extra, "--steps", "6",
                        "--batch-size", "2", "--seq-len", "32", "--threads", "1", "--trace-every", "3",
                        "--trace-probes", "2", "--eval-batches", "1", "--out", out],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, (env, r.stderr)
    found = {}
    for prefix, name in (("params/", "final_params.h5"), ("trace/", "trace.h5")):
        with h5py.File(os.path.join(out, name)) as f:
            f.visititems(lambda k, v: found.__setitem__(prefix + k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return found


def assert_bad_switch_named(blocksharp, env, name, value):
    """`bench optim` with name=value in the environment: exit 1 and one line naming it, before any work."""
    r = subprocess.run([blocksharp, "bench", "optim", "--threads", "1"], capture_output=True, text=True,
                       env=dict(env, **{name: value}))
    assert r.returncode == 1 and r.stderr == f"blocksharp: error: {name}: expected 0 or 1, got '{value}'\n", (
        r.returncode, r.stderr)


def assert_same_bits(on, off):
    """Two train_datasets results hold the same datasets, bit for bit; how many."""
    assert on.keys() == off.keys() and len(on) > 5, (sorted(on), sorted(off))
    diff = [k for k in on if not np.array_equal(np.asarray(on[k]), np.asarray(off[k]))]
    assert not diff, diff
    return len(on)
