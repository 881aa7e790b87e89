"""Load a model with an engine; one cached load per model and settings.

>>> model = load()                        # smollm2:135m, CPU, context 2048
Loaded smollm2:135m (Q4_1, 98 MB) on CPU, up to 2 threads, context 2048 in 0.21 s
>>> load("smollm2:135m-ct", engine="ctransformers")   # the second engine
>>> load(engine="remote", base_url="http://127.0.0.1:11434")   # a server

Engines: "llamacpp" (llama-cpp-python), "ctransformers", and "remote" (an
OpenAI-compatible server such as Ollama, LM Studio, llamafile).
"""
from __future__ import annotations

from kit.engines.base import Engine, Sampling, Stats, Stream  # noqa: F401
from kit.errors import BadParameter, KitError

ENGINES = ("llamacpp", "ctransformers", "remote")
ALIASES = {"llama.cpp": "llamacpp", "llama-cpp": "llamacpp", "llama_cpp": "llamacpp",
           "ct": "ctransformers", "openai": "remote", "server": "remote"}
_LOADED: dict[tuple, Engine] = {}


def load(name: str | None = None, *, engine: str | None = None, n_ctx: int | None = None,
         n_threads: int | None = None, n_gpu_layers: int = 0, seed: int | None = None,
         use_mmap: bool = True, check_fit: bool = True, quiet: bool = False,
         gpu_fallback: bool = False, base_url: str | None = None,
         api_key: str | None = None, adapt_threads: bool | None = None) -> Engine:
    """Load a model by kit name or .gguf path, validating the file first.

    engine=None picks the model's own engine (kit.engines.ct_convert's copies:
    ctransformers), else llama.cpp. For engine="remote", `name` is the
    server's model name (None: the first it serves) and base_url its address.
    adapt_threads (None: the setting KIT_ADAPT_THREADS, on unless "0"): use
    fewer than n_threads while other programs keep cores busy.
    With KIT_REMOTE_URL set (as `kit hub` does for a room's notebooks), a
    model by name comes from that server unless engine= says otherwise.
    """
    from kit.fit import check
    from kit.modelfile import human_size, read_facts
    from kit.settings import get_settings
    from kit.models.registry import resolve

    cfg = get_settings()
    n_ctx = cfg.n_ctx if n_ctx is None else n_ctx
    n_threads = cfg.n_threads if n_threads is None else n_threads
    adapt_threads = cfg.adapt_threads if adapt_threads is None else bool(adapt_threads)
    if engine is None and base_url:
        engine = "remote"
    if engine is None and _room_server(name):  # a room (kit hub) set KIT_REMOTE_URL
        engine = "remote"
    engine = ALIASES.get(engine, engine)
    if engine is not None and engine not in ENGINES:
        raise KitError(f"Unknown engine {engine!r}. Available: {', '.join(ENGINES)}.")
    if not isinstance(n_ctx, int) or n_ctx < 1:
        raise BadParameter("n_ctx", n_ctx, "a positive number of tokens, e.g. 2048")
    if not isinstance(n_threads, int) or n_threads < 1:
        raise BadParameter("n_threads", n_threads, "1 or more")
    if not isinstance(n_gpu_layers, int) or n_gpu_layers < -1:
        raise BadParameter("n_gpu_layers", n_gpu_layers, "-1 (all), 0 (CPU) or more")
    if engine == "remote":
        return _load_remote(name, base_url, api_key, n_ctx, quiet)
    ref = resolve(name)
    engine = engine or preferred_engine(ref.name)
    if n_gpu_layers and engine == "llamacpp" and not gpu_fallback:
        from kit.engines.llamacpp import gpu_offload_supported
        from kit.errors import NoGpuSupport

        if not gpu_offload_supported():  # a clear no, not a silent CPU run
            raise NoGpuSupport()
    facts = read_facts(ref.path)  # validates: a bad file never reaches llama.cpp
    from kit.engines.embed import embedding_settings

    embedding, n_ctx = embedding_settings(facts, engine, n_ctx)
    if engine == "ctransformers":
        _check_ctransformers(facts, n_gpu_layers)
    if check_fit:
        check(facts, n_ctx, n_gpu_layers)
    st = ref.path.stat()
    key = (engine, str(ref.path), st.st_size, st.st_mtime_ns, n_ctx, n_threads,
           n_gpu_layers, seed, use_mmap, adapt_threads)
    if key in _LOADED:
        return _LOADED[key]
    if engine == "ctransformers":
        from kit.engines.ctransformers import CTransformersEngine

        model = CTransformersEngine(ref.name, ref.path, facts, n_ctx=n_ctx,
                                    n_threads=n_threads, n_gpu_layers=n_gpu_layers,
                                    seed=seed, check="probe")
    else:
        from kit.engines.llama_probe import check_unvetted
        from kit.engines.llamacpp import LlamaCppEngine

        check_unvetted(ref.path, facts.architecture)  # an abort kills a child only
        model = LlamaCppEngine(ref.name, ref.path, n_ctx=n_ctx, n_threads=n_threads,
                               n_gpu_layers=n_gpu_layers, seed=seed, use_mmap=use_mmap,
                               embedding=embedding, adapt_threads=adapt_threads)
    model.facts = facts
    model.sha256 = ref.sha256
    notes = []
    if n_ctx > (facts.context_length or n_ctx):
        notes.append(f"note: the model was trained for {facts.context_length} tokens")
    if n_gpu_layers and not model.on_gpu and engine == "llamacpp":
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


def unload(model: Engine) -> None:
    """Forget one cached model (the server's memory budget uses this)."""
    for key in [k for k, v in _LOADED.items() if v is model]:
        del _LOADED[key]


def preferred_engine(name: str) -> str:
    """The engine a model was made for (its registry entry), else llama.cpp."""
    from kit.models.registry import installed

    entry = installed().get(name) or {}
    return entry.get("engine") if entry.get("engine") in ENGINES else "llamacpp"


def _check_ctransformers(facts, n_gpu_layers: int) -> None:
    """Refuse, before loading, what ctransformers cannot run."""
    import importlib.util
    import shutil

    from kit.engines.ctransformers import can_run
    from kit.errors import EngineCannotRun, NoCtransformersGpu

    ok, why = can_run(facts)
    if not ok:
        raise EngineCannotRun(why)
    if n_gpu_layers and (importlib.util.find_spec("nvidia") is None
                         or shutil.which("nvidia-smi") is None):
        raise NoCtransformersGpu()


def _room_server(name) -> bool:
    """KIT_REMOTE_URL is set and `name` is not a model file on this computer."""
    import os

    if not os.environ.get("KIT_REMOTE_URL"):
        return False
    return not (name and (str(name).endswith(".gguf") or os.path.exists(str(name))))


def _load_remote(name, base_url, api_key, n_ctx, quiet) -> Engine:
    from kit.engines.remote import RemoteEngine

    key = ("remote", name, base_url, n_ctx)
    if key in _LOADED:
        return _LOADED[key]
    model = RemoteEngine(name, base_url, api_key=api_key, n_ctx=n_ctx)
    if not quiet:
        print(f"Connected to {model.name} on {model.describe()} "
              f"in {model.load_s:.2f} s")
    _LOADED[key] = model
    return model


def engine_capabilities(packages: dict | None = None,
                        gpu_offload: bool | None = None) -> dict[str, dict]:
    """What each engine offers here: version, chat templates, GPU, streaming.

    Pass `packages` ({name: version or None}) and `gpu_offload` (llama.cpp's
    answer) to judge without importing anything, as `kit doctor` does.
    """
    if packages is None:
        from importlib import metadata

        packages = {}
        for pkg in ("llama-cpp-python", "ctransformers", "openai"):
            try:
                packages[pkg] = metadata.version(pkg)
            except metadata.PackageNotFoundError:
                packages[pkg] = None
    llama_gpu = ("yes" if gpu_offload else "no (this build is CPU only)"
                 if gpu_offload is False else "unknown")
    return {
        "llama.cpp": {"package": "llama-cpp-python",
                      "version": packages.get("llama-cpp-python"),
                      "chat_template": "yes, from the model file",
                      "gpu_offload": llama_gpu, "streaming": "yes"},
        "ctransformers": {"package": "ctransformers",
                          "version": packages.get("ctransformers"),
                          "chat_template": "no; the kit applies the file's template",
                          "gpu_offload": "CUDA only, with ctransformers[cuda]",
                          "streaming": "yes",
                          "runs": "llama/falcon GGUF from 2023; the starter after "
                                  "kit.engines.ct_convert"},
        "remote": {"package": "openai", "version": packages.get("openai", "installed"),
                   "chat_template": "yes, the server applies it",
                   "gpu_offload": "decided by the server", "streaming": "yes (SSE)"},
    }
