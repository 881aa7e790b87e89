"""Speed under load: llama.cpp threads and OpenMP's wait policy, idle and
beside one busy process (notebook 04's "Speed that holds" section).

Run with `python benchmarks/threads.py [--tokens 96] [--reps 2]`. Each
setting runs in a fresh process (OpenMP reads OMP_WAIT_POLICY when llama.cpp
loads), generating from the starter model; the busy neighbour is a Python loop
that keeps one core working, as a notebook kernel or a browser tab does.
Prints one table: tok/s per setting, idle and loaded, and each figure as a
share of the best static choice in its column. Figures from a shared machine
move from run to run: compare columns of one run, not runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys
from kit.engines import load
threads, n = int(sys.argv[1]), int(sys.argv[2])
m = load("smollm2:135m", n_ctx=512, n_threads=threads, quiet=True)
m.generate("Hello", max_tokens=4, temperature=0).text  # warm up
s = m.generate("Once upon a time, in a lighthouse by the sea, there lived",
               max_tokens=n, temperature=0)
s.text
print(json.dumps({"tps": s.stats.gen_tps}))
"""

POLICIES = {"default": None, "ACTIVE": "ACTIVE", "PASSIVE": "PASSIVE"}


def one(threads: int, policy: str | None, tokens: int) -> float:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(tokens)],
                         env=env, capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["tps"]


def busy_neighbour() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", default="1,2", help="thread counts to try, e.g. 1,2,4")
    a = ap.parse_args()
    choices = [(t, p) for t in map(int, a.threads.split(",")) for p in POLICIES]
    results = {}
    for load in ("idle", "busy"):
        neighbour = busy_neighbour() if load == "busy" else None
        try:
            for t, p in choices:
                results[(t, p, load)] = statistics.median(
                    one(t, POLICIES[p], a.tokens) for _ in range(a.reps))
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
    best = {load: max(results[(t, p, load)] for t, p in choices) for load in ("idle", "busy")}
    print(f"smollm2:135m, {a.tokens} tokens, median of {a.reps}, {os.cpu_count()} CPUs; "
          "busy = one other process spinning on a core. A shared machine: "
          "figures move between runs.")
    print(f"{'threads':>7} {'OMP_WAIT_POLICY':<16} {'idle tok/s':>10} {'of best':>7} "
          f"{'busy tok/s':>10} {'of best':>7}")
    for t, p in choices:
        i, b = results[(t, p, "idle")], results[(t, p, "busy")]
        print(f"{t:>7} {p:<16} {i:>10.1f} {i / best['idle']:>7.2f} "
              f"{b:>10.1f} {b / best['busy']:>7.2f}")


if __name__ == "__main__":
    main()
