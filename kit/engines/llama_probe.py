"""A test run in a child process for models of architectures the kit has not vetted.

kit.gguf_limits refuses, before loading, the settings that make llama.cpp
abort for the architectures the kit teaches with (VETTED). llama.cpp knows
about 150 more, each with asserts of its own (experts it requires, RoPE
sections, ...). A file of another architecture is first loaded and run for a
token in a child process: if llama.cpp aborts there, only the child dies and
the learner reads why. The verdict is kept (per file, size and time) in
KIT_HOME, so this costs a second or two once per file. Notebook 01.

>>> check_unvetted("odd-moe.gguf", "smallthinker")   # BadModelFile if it aborts
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from kit.errors import BadModelFile, KitError
from kit.settings import get_settings
from kit.util import atomic_write_text

VETTED = frozenset({"llama", "qwen2", "qwen3", "gemma3", "phi3", "bert"})
VERDICTS = "checked-models.json"
_CHILD = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, n_batch=16,
                      n_threads=1, verbose=False)
llm.eval((llm.tokenize(b"Hello", add_bos=True) or [0])[:4])
"""
_SEEN: dict = {}  # this process's verdicts: key -> "" (fine) or the reason


def _test_run(path: Path, timeout: float) -> str:
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, os.fspath(path)],
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        return f"a test run did not finish within {timeout:g} s"
    if done.returncode >= 0:  # fine, or a Python error the real load reports
        return ""
    try:
        name = signal.Signals(-done.returncode).name
    except ValueError:
        name = f"signal {-done.returncode}"
    return f"llama.cpp stopped ({name}) when a test run loaded it"


def check_unvetted(path, architecture: str | None, timeout: float = 120.0) -> None:
    """Raise BadModelFile if llama.cpp aborts on this file in a child process."""
    if architecture in VETTED:
        return
    path = Path(path)
    st = path.stat()
    key = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    store = get_settings().home / VERDICTS
    if key not in _SEEN:
        try:
            kept = json.loads(store.read_text())
        except (OSError, ValueError):
            kept = {}
        if not isinstance(kept, dict) or not isinstance(kept.get(key, ""), str):
            kept = {}
        if key not in kept:
            kept[key] = _test_run(path, timeout)
            kept = dict(list(kept.items())[-500:])  # the newest 500 files
            try:
                atomic_write_text(store, json.dumps(kept, indent=1))
            except (OSError, KitError):  # read-only or full: test again next time
                pass
        _SEEN[key] = kept[key]
    if _SEEN[key]:
        raise BadModelFile(
            path, f"{_SEEN[key]} (a {architecture} model)",
            "The file is damaged, or made for a newer llama.cpp: download it "
            "again, or update llama-cpp-python (`pip install -U "
            "llama-cpp-python`).")
