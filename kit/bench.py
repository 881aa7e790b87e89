"""How fast does a model run here, and why? Measured the way llama-bench does.

pp (prompt processing): N random tokens read in one batch from an empty cache.
tg (text generation): N tokens decoded one at a time, measured on its own.
Each test runs once to warm up, then `reps` times: mean and standard deviation.

>>> df = run_bench("smollm2:135m", threads=[1, 2])   # one row per test
>>> df[["threads", "test", "tps_mean", "tps_std", "bw_fraction"]]
"""
from __future__ import annotations

import ctypes
import datetime as _dt
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from kit.errors import (BadParameter, BenchNeedsLlamaCpp, DecodeFailed, NoGpuSupport,
                        NotABenchFile)
from kit.util import atomic_write_text
from kit.engines import _LOADED, load
from kit.engines.llamacpp import gpu_offload_supported, import_llama_cpp
from kit.machine import cpu_model_and_flags, nvidia_gpus
from kit.modelfile import read_facts, scan
from kit.models.registry import resolve
from kit.settings import get_settings

COLUMNS = ["model", "quantization", "file_bytes", "threads", "gpu_layers",
           "backend", "test", "n_tokens", "n_cached", "reps", "tps_mean",
           "tps_std", "seconds_mean", "load_s", "ttft_s", "peak_rss_bytes",
           "bytes_per_token", "bandwidth_gbs", "ceiling_tps", "bw_fraction"]
_ORDINARY: dict = {}  # model path -> token ids that are plain text, not special


def parse_list(text, name: str = "threads", allow_all: bool = False) -> list[int]:
    """'1,2' -> [1, 2]; with allow_all (GPU layers) 'all' -> -1."""
    if isinstance(text, int):
        text = str(text)
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    out = []
    for item in items:
        word = str(item).strip().lower()
        if allow_all and word in ("all", "-1"):
            out.append(-1)
        elif word.isdigit() and (allow_all or int(word) >= 1):
            out.append(int(word))
        else:
            raise BadParameter(name, item, "a comma-separated list of whole numbers"
                               + (" or 'all', e.g. 0,8,all" if allow_all
                                  else " of 1 or more, e.g. 1,2"))
    if not out:
        raise BadParameter(name, text, "at least one value")
    return list(dict.fromkeys(out))  # keep order, drop repeats


def memory_bandwidth(size_mb: int = 256, repeats: int = 5, threads: int = 1) -> float:
    """Bytes per second a plain memory copy moves (read + written), best of repeats.

    threads > 1 copies slices side by side (numpy lets go of the GIL), as a
    model's threads read its weights side by side.
    """
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    if not isinstance(threads, int) or threads < 1:
        raise BadParameter("threads", threads, "1 or more")
    src = np.ones(max(1, size_mb) * 2**20 // 8)
    dst = np.empty_like(src)
    bounds = np.linspace(0, src.size, threads + 1).astype(int)
    parts = [(dst[a:b], src[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    best = math.inf
    with ThreadPoolExecutor(threads) as pool:
        for i in range(repeats + 1):  # the first pass touches every page
            t0 = time.perf_counter()
            list(pool.map(lambda p: np.copyto(*p), parts))
            if i:
                best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best


def bytes_per_token(path) -> int:
    """Weight bytes read to generate one token (from the GGUF tensor list).

    Every weight matrix is read once per token, except the token-embedding
    table: one row of it is looked up, unless the output layer shares it.
    """

    tensors = scan(path).tensors
    names = {t.name for t in tensors}
    total = 0
    for t in tensors:
        if t.name == "token_embd.weight" and "output.weight" in names:
            total += t.n_bytes // max(1, t.shape[-1])
        else:
            total += t.n_bytes
    return total


def peak_rss() -> int | None:
    """This process's memory high-water mark in bytes (never goes down).

    It counts Python and its libraries too. The model file is mapped into
    memory (mmap): its pages count once they are read, which for generation
    is all of the weights, and the system may share or drop them later.
    """
    try:
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb if sys.platform == "darwin" else kb * 1024  # macOS says bytes
    except ImportError:  # Windows
        try:
            import psutil

            return getattr(psutil.Process().memory_info(), "peak_wset", None)
        except ImportError:
            return None


class Decoder:
    """Feeds tokens straight to llama.cpp through a loaded engine's context."""

    def __init__(self, engine, seed: int = 42):
        import numpy as np

        self.lib = lib = import_llama_cpp()
        self.llm = engine.llm
        self.ctx = engine.llm.ctx
        vocab = engine.vocab
        self.bos = lib.llama_vocab_bos(vocab) if lib.llama_vocab_get_add_bos(vocab) else None
        key = str(engine.path)
        if key not in _ORDINARY:  # like llama-bench, but never a special token
            n = lib.llama_vocab_n_tokens(vocab)
            normal = lib.LLAMA_TOKEN_ATTR_NORMAL
            _ORDINARY[key] = np.array([i for i in range(n)
                                       if lib.llama_vocab_get_attr(vocab, i) & normal],
                                      dtype=np.int32)
        self.ordinary = _ORDINARY[key]
        self.rng = np.random.default_rng(seed)
        self.n_batch = max(1, int(engine.llm.n_batch))

    def tokens(self, n: int) -> list[int]:
        toks = [int(t) for t in self.rng.choice(self.ordinary, size=n)]
        if self.bos is not None and n:
            toks[0] = self.bos  # llama-bench starts each test with BOS
        return toks

    def clear(self) -> None:
        """Empty the KV cache; the engine forgets its cached prompt too."""
        self.lib.llama_memory_clear(self.lib.llama_get_memory(self.ctx), True)
        self.llm.reset()

    def cached(self) -> int:
        """How many positions the KV cache holds now."""
        return self.lib.llama_memory_seq_pos_max(self.lib.llama_get_memory(self.ctx), 0) + 1

    def _decode(self, arr, n: int) -> None:
        rc = self.lib.llama_decode(self.ctx, self.lib.llama_batch_get_one(arr, n))
        if rc != 0:
            raise DecodeFailed(n=n, code=rc)

    def pp(self, n: int) -> float:
        """Seconds to read n tokens in batches (the prompt)."""
        toks = self.tokens(n)
        chunks = [toks[i:i + self.n_batch] for i in range(0, n, self.n_batch)]
        arrays = [((ctypes.c_int32 * len(c))(*c), len(c)) for c in chunks]
        t0 = time.perf_counter()
        for arr, k in arrays:
            self._decode(arr, k)
        self.lib.llama_synchronize(self.ctx)
        return time.perf_counter() - t0

    def tg(self, n: int) -> float:
        """Seconds to decode n tokens one at a time (generation)."""
        arrays = [(ctypes.c_int32 * 1)(t) for t in self.tokens(n)]
        t0 = time.perf_counter()
        for arr in arrays:
            self._decode(arr, 1)
            self.lib.llama_synchronize(self.ctx)
        return time.perf_counter() - t0


def measure(engine, test: str, n: int, reps: int = 3, seed: int = 42) -> dict:
    """Time one test ('pp' or 'tg') on a loaded llama.cpp engine."""
    if getattr(engine, "engine_name", "") != "llama.cpp" or test not in ("pp", "tg"):
        raise BenchNeedsLlamaCpp(test=test, engine=getattr(engine, "engine_name", engine))
    dec = Decoder(engine, seed)
    run = dec.pp if test == "pp" else dec.tg
    dec.clear()
    run(n if test == "pp" else 1)  # warm-up, as llama-bench does
    seconds = []
    for _ in range(reps):
        dec.clear()
        seconds.append(run(n))
    n_cached = dec.cached()
    dec.clear()  # leave the engine ready for normal use
    tps = [n / s for s in seconds]
    return {"test": f"{test}{n}", "n_tokens": n, "n_cached": n_cached, "reps": reps,
            "tps_mean": statistics.fmean(tps),
            "tps_std": statistics.stdev(tps) if reps > 1 else 0.0,
            "seconds_mean": statistics.fmean(seconds)}


def run_bench(models=None, threads=None, gpu_layers=(0,), n_prompt: int = 128,
              n_gen: int = 64, reps: int = 3, seed: int = 42,
              bandwidth: float | None = None, measure_bandwidth: bool = True,
              quiet: bool = False):
    """Measure pp and tg for each model x threads x GPU layers: a DataFrame."""

    # llama.cpp's libraries first, numpy (pandas) after: on one CUDA machine
    # the other order crashed loads with 0 GPU layers.
    import_llama_cpp()
    import pandas as pd

    models = [models] if models is None or isinstance(models, (str, Path)) else list(models)
    threads = parse_list(threads if threads is not None else get_settings().n_threads)
    layers = parse_list(gpu_layers, "gpu_layers", allow_all=True)
    for name, value in (("n_prompt", n_prompt), ("n_gen", n_gen)):
        if not isinstance(value, int) or value < 0:
            raise BadParameter(name, value, "0 (skip the test) or a number of tokens")
    if not n_prompt and not n_gen:
        raise BadParameter("n_prompt", n_prompt, "above 0 when n_gen is 0")
    if not isinstance(reps, int) or reps < 1:
        raise BadParameter("reps", reps, "1 or more")
    if any(layers) and not gpu_offload_supported():
        raise NoGpuSupport("gpu_layers " + ",".join(map(str, layers)), False)
    refs = [resolve(None if m is None else str(m)) for m in models]  # fail early
    if bandwidth is None and measure_bandwidth and 0 in layers:
        bandwidth = memory_bandwidth(threads=max(threads))
        if not quiet:
            print(f"Memory bandwidth (numpy copy, {max(threads)} threads): "
                  f"{bandwidth / 1e9:.1f} GB/s")
    tests = [(t, n) for t, n in (("pp", n_prompt), ("tg", n_gen)) if n]
    rows = []
    for ref in refs:
        facts = read_facts(ref.path)
        per_token = bytes_per_token(ref.path)
        for g in layers:
            for t in threads:
                before = set(_LOADED)
                engine = load(str(ref.path), engine="llamacpp", quiet=True,
                              n_ctx=max(n_prompt + n_gen, 64), n_threads=t,
                              n_gpu_layers=g, adapt_threads=False)  # exactly t
                try:
                    results = {k: measure(engine, k, n, reps, seed) for k, n in tests}
                finally:
                    for key in set(_LOADED) - before:  # free what we loaded
                        del _LOADED[key]
                cpu = not engine.on_gpu
                backend, load_s = ("GPU" if engine.on_gpu else "CPU"), engine.load_s
                del engine
                tg_step = 1 / results["tg"]["tps_mean"] if "tg" in results else 0.0
                ttft = results["pp"]["seconds_mean"] + tg_step if "pp" in results else math.nan
                for k, res in results.items():
                    ceiling = bandwidth / per_token if bandwidth and cpu and k == "tg" else math.nan
                    rows.append({
                        "model": ref.name, "quantization": facts.quantization,
                        "file_bytes": facts.file_size, "threads": t, "gpu_layers": g,
                        "backend": backend, **res, "load_s": load_s, "ttft_s": ttft,
                        "peak_rss_bytes": peak_rss(), "bytes_per_token": per_token,
                        "bandwidth_gbs": bandwidth / 1e9 if bandwidth else math.nan,
                        "ceiling_tps": ceiling, "bw_fraction": res["tps_mean"] / ceiling})
                if not quiet:
                    print(_line(rows[-len(results):]))
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["meta"] = machine_meta(bandwidth)
    return df


def _line(rows) -> str:
    r = rows[0]
    where = "all" if r["gpu_layers"] == -1 else r["gpu_layers"]
    figures = ", ".join(f"{x['test']} {x['tps_mean']:.1f} ± {x['tps_std']:.1f} tok/s"
                        for x in rows)
    return f"{r['model']}, {r['threads']} threads, {where} GPU layers: {figures}"


def machine_meta(bandwidth: float | None = None) -> dict:
    """Where and when: date, CPU, GPU, versions (stored with the results)."""
    from importlib import metadata

    def version(dist):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model_and_flags()[0], "cores_logical": os.cpu_count(),
            "os": platform.platform(), "gpus": [g["name"] for g in nvidia_gpus()],
            "llama_cpp_python": version("llama-cpp-python") or _llama_version(),
            "bandwidth_gbs": bandwidth / 1e9 if bandwidth else None,
            "method": "llama-bench: random tokens, warm-up, pp batched, tg one by one"}


def _llama_version():
    try:
        import llama_cpp

        return llama_cpp.__version__
    except Exception:  # not importable: the results say so
        return None


def to_json(df, path=None) -> str:
    """Results as JSON ({"meta": ..., "rows": [...]}); written to path if given."""
    rows = json.loads(df.to_json(orient="records"))  # NaN -> null
    text = json.dumps({"meta": df.attrs.get("meta", {}), "rows": rows}, indent=1)
    if path is not None:
        atomic_write_text(path, text + "\n")
    return text


def to_csv(df, path) -> Path:
    """Results as CSV, one row per test."""
    return atomic_write_text(path, df.to_csv(index=False))


def recorded_results(name: str = "gpu_h100_starter"):
    """Results recorded elsewhere and shipped with the kit (kit/data/NAME.json).

    >>> recorded_results().attrs["meta"]["gpus"]     # ['NVIDIA H100 80GB HBM3']
    """
    from importlib.resources import as_file, files

    from kit.errors import KitError

    shipped = files("kit") / "data" / f"{name}.json"
    if not shipped.is_file():
        raise KitError(f"The kit ships no recorded results named {name!r}; "
                       "use 'gpu_h100_starter', or load_results(PATH) for your own.")
    with as_file(shipped) as path:
        return load_results(path)


def load_results(path):
    """Read results saved by to_json or to_csv back into a DataFrame."""
    import pandas as pd

    path = Path(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    try:
        data = json.loads(path.read_text())
        df = pd.DataFrame(data["rows"], columns=COLUMNS)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NotABenchFile(path=path, problem=exc) from exc
    df.attrs["meta"] = data.get("meta", {})
    return df
