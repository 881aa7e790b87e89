"""Speed figures: pp and tg for the starter model and its quantized variants.

Run with `python benchmarks/speed.py [--threads 1,2] [--rounds 3]`. Prints, never asserts (shared machines
are noisy); every ratio compares figures measured side by side, interleaved,
in this same run. Targets: the kit's tg within 5% of llama.cpp's own
measurement, and the streaming path at >= 0.95 of the bare engine speed.

The reference is llama.cpp's real `llama-bench` when one is found (set
LLAMA_BENCH=/path/to/llama-bench, or have it on PATH); otherwise a bare
llama-cpp-python loop (Llama.eval one token at a time), and it says so.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from types import SimpleNamespace

import llama_cpp

from kit import bench
from kit.engines import load
from kit.models.registry import installed, resolve

N_PROMPT, N_GEN, REPS, ROUNDS = 128, 64, 3, 3


def variants() -> list[str]:
    """The starter and any quantized copies of it (smollm2:135m-q8_0, ...)."""
    return ["smollm2:135m"] + sorted(n for n in installed() if n.startswith("smollm2:135m-"))


def llama_bench_tg(exe: str, path: str, threads: int) -> float:
    out = subprocess.run([exe, "-m", path, "-p", "0", "-n", str(N_GEN), "-r", str(REPS),
                          "-t", str(threads), "-ngl", "0", "-fa", "0", "-o", "json"],
                         capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout)[0]["avg_ts"]


def bare_tg(llm, threads: int) -> float:
    """tg with nothing but llama-cpp-python: Llama.eval, one token at a time."""
    from kit.engines.llamacpp import vocab_of

    dec = bench.Decoder(SimpleNamespace(llm=llm, path=llm.model_path, vocab=vocab_of(llm)),
                        seed=1)
    tokens = dec.tokens(N_GEN)
    rates = []
    for _ in range(REPS):
        llm.reset()
        t0 = time.perf_counter()
        for tok in tokens:
            llm.eval([tok])
        rates.append(N_GEN / (time.perf_counter() - t0))
    return statistics.fmean(rates)


def streaming_tg(model) -> float:
    model.llm.reset()
    stream = model.generate("Once upon a time, in a lighthouse by the sea, there lived",
                            max_tokens=N_GEN, temperature=0, seed=1)
    stream.text
    return stream.stats.gen_tps


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="comma list (default 1,2)")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds")
    args = ap.parse_args()
    threads, rounds = bench.parse_list(args.threads), max(1, args.rounds)
    bw = bench.memory_bandwidth(threads=max(threads))
    print(f"memory bandwidth (numpy copy, {max(threads)} threads): {bw / 1e9:.1f} GB/s")
    print(f"{'model':<22} {'thr':>3} {'pp' + str(N_PROMPT):>14} {'tg' + str(N_GEN):>14}"
          f" {'of ceiling':>10}")
    for name in variants():
        df = bench.run_bench(name, threads=threads, n_prompt=N_PROMPT, n_gen=N_GEN,
                             reps=REPS, bandwidth=bw, quiet=True)
        for t in threads:
            pp = df[(df.threads == t) & (df.test.str.startswith("pp"))].iloc[0]
            tg = df[(df.threads == t) & (df.test.str.startswith("tg"))].iloc[0]
            print(f"{name:<22} {t:>3} {pp.tps_mean:>8.1f} ±{pp.tps_std:>4.1f} "
                  f"{tg.tps_mean:>8.1f} ±{tg.tps_std:>4.1f} {tg.bw_fraction:>10.1%}")

    path = str(resolve("smollm2:135m").path)
    exe = os.environ.get("LLAMA_BENCH") or shutil.which("llama-bench")
    ref_name = f"llama-bench ({exe})" if exe else "bare llama-cpp-python Llama.eval loop"
    print(f"\nsmollm2:135m tg{N_GEN}: kit.bench against {ref_name}; "
          f"{rounds} interleaved rounds of {REPS} repetitions, medians")
    for t in threads:
        model = load("smollm2:135m", n_ctx=N_PROMPT + N_GEN + 64, n_threads=t, quiet=True)
        plain = None if exe else llama_cpp.Llama(path, n_ctx=N_PROMPT + N_GEN + 64,
                                                  n_threads=t, n_threads_batch=t,
                                                  verbose=False)
        kit_tg, ref_tg, stream_tg = [], [], []
        for _ in range(rounds):
            kit_tg.append(bench.measure(model, "tg", N_GEN, REPS)["tps_mean"])
            ref_tg.append(llama_bench_tg(exe, path, t) if exe else bare_tg(plain, t))
            stream_tg.append(statistics.fmean(streaming_tg(model) for _ in range(REPS)))
        k, r, s = (statistics.median(x) for x in (kit_tg, ref_tg, stream_tg))
        print(f"  {t} threads: kit {k:.1f}, reference {r:.1f} tok/s -> kit/reference "
              f"{k / r:.3f} (target 0.95..1.05); streaming {s:.1f} tok/s -> "
              + (f"streaming/bare loop {s / r:.3f} (target >= 0.95); " if not exe else "")
              + f"streaming/decoding alone {s / k:.3f} (the rest is choosing each "
              "token among all 49,152 and turning it into text)")
        del plain


if __name__ == "__main__":
    main()
