"""Quantization and evaluation figures on the starter model.

Run with `python benchmarks/quantize.py` (after `make setup`). Prints one
table; nothing is asserted (shared machines are noisy). Targets: quantizing
the starter to five types < 30 s in all; evaluating one variant on the
bundled text (perplexity, KL divergence and top-token agreement against the
starter, 8 windows of 512 tokens) < 60 s. The variants are written to a
temporary store and deleted at the end.

Side by side, in the same run: the evaluation pass against a bare
llama-cpp-python forward pass over the same windows (no logits kept), so the
ratio shows what reading every position's logits and the arithmetic cost.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TYPES = ["q8_0", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k"]
ONE_VARIANT = "q4_k_m"


def bare_forward_s(path: Path, windows, n_ctx: int, threads: int) -> float:
    """Seconds for llama-cpp-python alone to read the same windows."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
                          n_threads=threads, n_threads_batch=threads, verbose=False)
    t0 = time.perf_counter()
    for w in windows:
        llm.reset()
        llm.eval(w)
    seconds = time.perf_counter() - t0
    llm.close()
    return seconds


def main() -> None:
    from kit.models.starter import install_starter

    starter = install_starter(quiet=True).path  # before KIT_HOME moves
    home = Path(tempfile.mkdtemp(prefix="kit-bench-quant-"))
    os.environ["KIT_HOME"] = str(home)
    try:
        run(starter)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(starter: Path) -> None:
    from kit.evaluate import DEFAULT_CTX, Scorer, evaluate, load_eval_text
    from kit.modelfile import human_size
    from kit.quantize import quantize
    from kit.settings import get_settings
    from kit.models.registry import register

    threads = get_settings().n_threads
    register("smollm2:135m", starter, source="bench")
    t0 = time.perf_counter()
    variants = quantize("smollm2:135m", TYPES, quiet=True, threads=threads)
    quant_total = time.perf_counter() - t0

    print(f"Quantizing smollm2:135m (Q4_1, {human_size(starter.stat().st_size)}) "
          f"with llama.cpp, {threads} threads")
    print(f"{'TYPE':<8} {'SIZE':>8} {'BPW':>6} {'SECONDS':>8}  FALLBACK TENSORS")
    for v in variants:
        fell = sum(len(f.tensors) for f in v.fallbacks)
        print(f"{v.qtype:<8} {human_size(v.size):>8} {v.bits_per_weight:>6.2f} "
              f"{v.seconds:>8.2f}  {fell}")
    print(f"all five types: {quant_total:.1f} s (target < 30 s)\n")

    text = load_eval_text()
    t0 = time.perf_counter()
    rows = evaluate([f"smollm2:135m-{ONE_VARIANT}"], reference="smollm2:135m",
                    text=text, threads=threads, quiet=True)
    eval_total = time.perf_counter() - t0
    ref, var = rows
    sc = Scorer("smollm2:135m", DEFAULT_CTX, threads)
    windows = sc.windows(sc.tokenize(text))
    sc.close()
    bare = bare_forward_s(starter, windows, DEFAULT_CTX, threads)
    n_tokens = len(windows) * DEFAULT_CTX
    print(f"Evaluating smollm2:135m-{ONE_VARIANT} against smollm2:135m on the "
          f"bundled text: {len(windows)} windows of {DEFAULT_CTX} tokens, "
          f"{var.n_scored} scored")
    print(f"{'MODEL':<22} {'PPL':>8} {'KL':>8} {'SAME TOP':>9} {'SECONDS':>8}")
    for r in rows:
        kl = "ref" if r.is_reference else f"{r.kl_divergence:.4f}"
        print(f"{r.name:<22} {r.perplexity:>8.3f} {kl:>8} "
              f"{100 * r.top_token_agreement:>8.1f}% {r.seconds:>8.2f}")
    print(f"one variant, both passes: {eval_total:.1f} s (target < 60 s)")
    print(f"bare llama-cpp-python forward pass over the same {n_tokens} tokens: "
          f"{bare:.2f} s; evaluation pass / bare pass = "
          f"{var.seconds / bare:.2f} (variant), {ref.seconds / bare:.2f} (reference)")


if __name__ == "__main__":
    main()
