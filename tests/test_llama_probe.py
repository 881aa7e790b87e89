"""kit.engines.llama_probe: a model llama.cpp aborts on kills a child, not us.

The files are the starter cut down (tests/test_gguf_fuzz.py) under other
architectures' names: "smallthinker" asserts that a model has experts.
"""
from __future__ import annotations

import json

import pytest

import kit
from kit.engines import llama_probe
from kit.errors import BadModelFile, KitError
from test_gguf_fuzz import STR, layout, parse, setkv, small_model, val, write


def _as(arch: str, starter, folder):
    small, data = layout(small_model(parse(starter)))
    kvs = [(arch + k[5:] if k.startswith("llama.") else k, raw)
           for k, raw in small["kvs"]]
    h = setkv({**small, "kvs": kvs}, "general.architecture", val(STR, arch))
    return write(folder / f"{arch}.gguf", h, data)


def test_an_aborting_model_is_refused_after_a_test_run(starter_path, kit_home,
                                                       tmp_path, monkeypatch):
    odd = _as("smallthinker", starter_path, tmp_path)
    with pytest.raises(BadModelFile, match=r"stopped \(SIGABRT\).*smallthinker"):
        kit.load(str(odd), quiet=True, check_fit=False)
    kept = json.loads((kit_home / llama_probe.VERDICTS).read_text())
    assert [v for v in kept.values()] == [
        "llama.cpp stopped (SIGABRT) when a test run loaded it"]
    # the verdict is kept: another process does not run the test again
    monkeypatch.setattr(llama_probe, "_SEEN", {})
    monkeypatch.setattr(llama_probe, "_test_run", pytest.fail)
    with pytest.raises(BadModelFile, match="SIGABRT"):
        llama_probe.check_unvetted(odd, "smallthinker")


def test_vetted_and_sound_files_pass(starter_path, kit_home, tmp_path):
    llama_probe.check_unvetted(starter_path, "llama")  # vetted: no test run
    assert not (kit_home / llama_probe.VERDICTS).exists()
    other = _as("granite", starter_path, tmp_path)  # llama.cpp refuses it, calmly
    with pytest.raises(KitError) as err:
        kit.load(str(other), quiet=True, check_fit=False)
    assert not isinstance(err.value, BadModelFile)  # llama.cpp's own message
    kept = json.loads((kit_home / llama_probe.VERDICTS).read_text())
    assert list(kept.values()) == [""]
