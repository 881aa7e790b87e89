"""Load a model with an engine; one cached load per model and settings.

>>> model = load()                        # smollm2:135m, CPU, context 2048
Loaded smollm2:135m (Q4_1, 98 MB) on CPU, 2 threads, context 2048 in 0.21 s
"""
from __future__ import annotations

from kit.engines.base import Engine, Sampling, Stats, Stream  # noqa: F401
from kit.errors import BadParameter, KitError

ENGINES = ("llamacpp",)
_LOADED: dict[tuple, Engine] = {}


def load(name: str | None = None, *, engine: str = "llamacpp", n_ctx: int | None = None,
         n_threads: int | None = None, n_gpu_layers: int = 0, seed: int | None = None,
         use_mmap: bool = True, check_fit: bool = True, quiet: bool = False) -> Engine:
    """Load a model by kit name or .gguf path, validating the file first."""
    from kit.fit import check
    from kit.modelfile import human_size, read_facts
    from kit.settings import get_settings
    from kit.store import resolve

    cfg = get_settings()
    n_ctx = cfg.n_ctx if n_ctx is None else n_ctx
    n_threads = cfg.n_threads if n_threads is None else n_threads
    if engine not in ENGINES:
        raise KitError(f"Unknown engine {engine!r}. Available: {', '.join(ENGINES)}.")
    if not isinstance(n_ctx, int) or n_ctx < 1:
        raise BadParameter("n_ctx", n_ctx, "a positive number of tokens, e.g. 2048")
    if not isinstance(n_threads, int) or n_threads < 1:
        raise BadParameter("n_threads", n_threads, "1 or more")
    if not isinstance(n_gpu_layers, int) or n_gpu_layers < -1:
        raise BadParameter("n_gpu_layers", n_gpu_layers, "-1 (all), 0 (CPU) or more")
    ref = resolve(name)
    facts = read_facts(ref.path)  # validates: a bad file never reaches llama.cpp
    if check_fit:
        check(facts, n_ctx, n_gpu_layers)
    st = ref.path.stat()
    key = (engine, str(ref.path), st.st_size, st.st_mtime_ns, n_ctx, n_threads,
           n_gpu_layers, seed, use_mmap)
    if key in _LOADED:
        return _LOADED[key]
    from kit.engines.llamacpp import LlamaCppEngine

    model = LlamaCppEngine(ref.name, ref.path, n_ctx=n_ctx, n_threads=n_threads,
                           n_gpu_layers=n_gpu_layers, seed=seed, use_mmap=use_mmap)
    model.facts = facts
    notes = []
    if n_ctx > (facts.context_length or n_ctx):
        notes.append(f"note: the model was trained for {facts.context_length} tokens")
    if n_gpu_layers and not model.on_gpu:
        notes.append("note: this llama-cpp-python has no GPU support, so it runs on "
                     "the CPU (README: Troubleshooting)")
    if not quiet:
        print(f"Loaded {ref.name} ({facts.quantization}, {human_size(facts.file_size)}) "
              f"on {model.describe()} in {model.load_s:.2f} s"
              + "".join(f"; {n}" for n in notes))
    _LOADED[key] = model
    return model


def unload_all() -> None:
    """Forget cached models (frees their memory once nothing else holds them)."""
    _LOADED.clear()
