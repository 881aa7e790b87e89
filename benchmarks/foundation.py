"""Foundation figures: the kit against plain llama-cpp-python, side by side.

Run with `make bench` (or `python benchmarks/foundation.py`). Prints one table;
the ratios compare figures measured in this same run, so a busy machine
slows both sides alike. Targets: speed ratio >= 0.95, load < 1 s,
first token < 0.5 s, `kit run` for 64 tokens < 5 s from a cold process.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
import time

import llama_cpp

import kit
from kit.engines import unload_all
from kit.models.registry import resolve

PROMPT = "Once upon a time, in a lighthouse by the sea, there lived"
N_TOKENS, N_CTX, THREADS, REPS = 128, 2048, 2, 5
SAMPLING = dict(temperature=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1)


def plain_loop(llm) -> float:
    """Tokens/s of llama-cpp-python's own streaming completion, nothing else."""
    llm.reset()
    n, t_first = 0, None
    for _ in llm.create_completion(PROMPT, max_tokens=N_TOKENS, stream=True,
                                   temperature=SAMPLING["temperature"],
                                   top_k=40, top_p=0.95, min_p=0.05,
                                   repeat_penalty=1.1):
        n += 1
        if t_first is None:
            t_first = time.perf_counter()
    assert n >= N_TOKENS - 1, f"plain loop stopped early ({n} tokens)"
    return (n - 1) / (time.perf_counter() - t_first)


def kit_loop(model) -> float:
    model.llm.reset()  # same starting state as the plain loop: no cached prompt
    stream = model.generate(PROMPT, max_tokens=N_TOKENS, **SAMPLING)
    for _ in stream:
        pass
    assert stream.stats.generated_tokens == N_TOKENS, stream.stats.line()
    return stream.stats.gen_tps


def main() -> None:
    path = str(resolve("smollm2:135m").path)
    plain = llama_cpp.Llama(path, n_ctx=N_CTX, n_threads=THREADS,
                            n_threads_batch=THREADS, verbose=False)
    model = kit.load("smollm2:135m", n_ctx=N_CTX, n_threads=THREADS, quiet=True)
    kit_tps, plain_tps = [], []
    for _ in range(REPS):  # interleaved, so drifts hit both sides
        plain_tps.append(plain_loop(plain))
        kit_tps.append(kit_loop(model))

    loads, ttfts = [], []
    for _ in range(REPS):
        unload_all()
        t0 = time.perf_counter()
        m = kit.load("smollm2:135m", n_ctx=N_CTX, n_threads=THREADS, quiet=True)
        loads.append(time.perf_counter() - t0)
        s = m.chat([{"role": "user", "content": "Hello, who are you?"}],
                   max_tokens=1, **SAMPLING)
        s.text
        ttfts.append(s.stats.ttft_s)

    colds = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "kit", "run", "smollm2:135m",
                              PROMPT, "--raw", "--max-tokens", "64", "--temperature", "0",
                              "--json"], capture_output=True, text=True, check=True)
        colds.append(time.perf_counter() - t0)
        assert '"generated_tokens": 64' in out.stdout, out.stdout

    med = statistics.median
    rows = [
        ("generation, kit (tok/s)", med(kit_tps), ""),
        ("generation, plain llama-cpp-python (tok/s)", med(plain_tps), ""),
        ("speed ratio kit / plain", med(kit_tps) / med(plain_tps), ">= 0.95"),
        ("load from disk (s)", med(loads), "< 1"),
        ("time to first token, one-line chat (s)", med(ttfts), "< 0.5"),
        ("`kit run`, cold process to 64th token (s)", med(colds), "< 5"),
    ]
    print(f"smollm2:135m, {THREADS} threads, context {N_CTX}, "
          f"{N_TOKENS} tokens, median of {REPS}")
    print(f"{'figure':<46} {'value':>9}  target")
    for name, value, target in rows:
        print(f"{name:<46} {value:>9.3f}  {target}")


if __name__ == "__main__":
    main()
