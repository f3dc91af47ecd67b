"""Self time per op name in a Chrome trace of LibTorch's profiler (profile_train_step.cpp writes one).

    /usr/bin/python3 tools/experiments/summarize_op_profile.py TRACE [STEPS] [TOP]

An op's self time is its duration less that of the ops it called (nested events on the same thread).
Prints per step (the trace's total divided by STEPS, default 5) the TOP (default 30) ops by self time.
"""
import collections
import json
import sys


def main():
    trace = sys.argv[1]
    steps = float(sys.argv[2]) if len(sys.argv) > 2 else 5
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    events = [e for e in json.load(open(trace)) if e.get("ph") == "X"]
    self_us, calls = collections.Counter(), collections.Counter()
    per_thread = collections.defaultdict(list)
    for e in events:
        per_thread[e["tid"]].append(e)
    for evs in per_thread.values():
        evs.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in evs:
            while stack and stack[-1]["ts"] + stack[-1]["dur"] <= e["ts"] + 1e-6:
                stack.pop()
            if stack:
                self_us[stack[-1]["name"]] -= e["dur"]
            self_us[e["name"]] += e["dur"]
            calls[e["name"]] += 1
            stack.append(e)
    total = sum(self_us.values())
    print(f"recorded self time per step: {total / steps / 1e3:.1f} ms")
    for name, us in self_us.most_common(top):
        print(f"{name[:70]:70s} {us / steps / 1e3:8.2f} ms/step {100 * us / total:5.1f} %  "
              f"{calls[name] / steps:6.1f} calls/step")


if __name__ == "__main__":
    main()
