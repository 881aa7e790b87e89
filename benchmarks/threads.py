"""Speed under load: llama.cpp threads and OpenMP's wait policy, idle and
beside one busy process (notebook 04's "Speed that holds" section).

Run with `python benchmarks/threads.py [--tokens 96] [--reps 2]`. Each
setting runs in a fresh process (OpenMP reads OMP_WAIT_POLICY when llama.cpp
loads), generating from the starter model; the busy neighbour is a Python loop
that keeps one core working, as a notebook kernel or a browser tab does.
Prints one table: tok/s per setting, idle and loaded, and each figure as a
share of the best static choice in its column. The last row is the kit's
default: up to all the threads, fewer while other programs keep cores busy
(kit.engines.threads). Targets: busy >= 0.8 of the best static choice,
idle >= 0.95 of two spinning threads (the old default). Figures from a shared machine
move from run to run: compare columns of one run, not runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from contextlib import nullcontext

from kit.engines.threads import busy_neighbour

CHILD = r"""
import json, sys
from kit.engines import load
threads, n, adapt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
m = load("smollm2:135m", n_ctx=512, n_threads=threads, adapt_threads=adapt, quiet=True)
m.generate("Hello", max_tokens=4, temperature=0).text  # warm up
s = m.generate("Once upon a time, in a lighthouse by the sea, there lived",
               max_tokens=n, temperature=0)
s.text
print(json.dumps({"tps": s.stats.gen_tps}))
"""

# "kit": nothing set, so the kit's own choice applies (kit.settings.OPENMP_DEFAULTS:
# ACTIVE with a short spin, GOMP_SPINCOUNT=300000)
POLICIES = {"kit": None, "ACTIVE": "ACTIVE", "PASSIVE": "PASSIVE"}


def one(threads: int, policy: str | None, tokens: int, adapt: bool = False) -> float:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("GOMP_SPINCOUNT", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(tokens),
                          "1" if adapt else "0"],
                         env=env, capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["tps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", default="1,2", help="thread counts to try, e.g. 1,2,4")
    a = ap.parse_args()
    most = max(map(int, a.threads.split(",")))
    # static choices: a thread count and a wait policy, fixed for the run;
    # then the kit's default: up to `most` threads, fewer beside a busy program
    choices = [(t, p, False) for t in map(int, a.threads.split(",")) for p in POLICIES]
    choices.append((most, "kit", True))
    results = {}
    for load in ("idle", "busy"):
        with busy_neighbour(seconds=3600) if load == "busy" else nullcontext():
            for t, p, adapt in choices:
                results[(t, p, adapt, load)] = statistics.median(
                    one(t, POLICIES[p], a.tokens, adapt) for _ in range(a.reps))
    best = {load: max(results[(t, p, False, load)] for t, p, adapt in choices if not adapt)
            for load in ("idle", "busy")}
    print(f"smollm2:135m, {a.tokens} tokens, median of {a.reps}, {os.cpu_count()} CPUs; "
          "busy = one other process spinning on a core; 'of best' = share of the best "
          "static choice in that column. A shared machine: figures move between runs.")
    print(f"{'threads':>16} {'OMP_WAIT_POLICY':<16} {'idle tok/s':>10} {'of best':>7} "
          f"{'busy tok/s':>10} {'of best':>7}")
    for t, p, adapt in choices:
        i, b = results[(t, p, adapt, "idle")], results[(t, p, adapt, "busy")]
        label = f"adaptive, 1-{t}" if adapt else str(t)
        print(f"{label:>16} {p:<16} {i:>10.1f} {i / best['idle']:>7.2f} "
              f"{b:>10.1f} {b / best['busy']:>7.2f}")

if __name__ == "__main__":
    main()
