"""The `kit` command, run as a real subprocess (as a learner would)."""
import json
import os
import subprocess
import sys

import pytest

from kit.cli import _chat_set, main
from kit.chat import Conversation


def kit(*args, input=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "kit", *args], input=input,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_list_shows_the_starter(starter_path):
    out = kit("list")
    assert out.returncode == 0
    assert "smollm2:135m" in out.stdout and "Q4_1" in out.stdout
    assert str(starter_path) in out.stdout


def test_info_json_has_the_facts():
    out = kit("info", "smollm2:135m", "--json")
    facts = json.loads(out.stdout)
    assert facts["architecture"] == "llama" and facts["has_chat_template"] is True
    assert 130e6 < facts["parameters"] < 140e6


def test_run_streams_then_prints_figures():
    out = kit("run", "smollm2:135m", "What is the capital of France?",
              "--temperature", "0", "--max-tokens", "32")
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout
    assert "generated" in out.stderr and "tok/s" in out.stderr


def test_run_json_is_one_object():
    out = kit("run", "smollm2:135m", "Say hello.", "--json", "--seed", "1",
              "--max-tokens", "8", "--raw")
    data = json.loads(out.stdout)
    assert data["model"] == "smollm2:135m"
    assert data["stats"]["generated_tokens"] <= 8 and data["answer"]


@pytest.mark.parametrize("args,words", [
    (["run", "nope:7b", "hi"], ["nope:7b", "smollm2:135m", "kit setup"]),
    (["run", "smollm2:135m", "hi", "--temperature", "-1"], ["temperature", "between"]),
    (["run", "smollm2:135m", "hi", "--ctx", "0"], ["n_ctx"]),
    (["info", "/no/such/file.gguf"], ["not found"]),
])
def test_bad_input_exits_1_with_the_fix(args, words):
    out = kit(*args)
    assert out.returncode == 1
    assert out.stderr.startswith("Error:")
    for w in words:
        assert w in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("cut", [4, 5000, 60_000_000])
def test_truncated_gguf_is_a_clean_error(starter_path, tmp_path, cut):
    bad = tmp_path / "cut.gguf"
    with open(starter_path, "rb") as f:
        bad.write_bytes(f.read(cut))
    out = kit("run", str(bad), "hi")
    assert out.returncode == 1 and "not a usable GGUF model" in out.stderr


def test_corrupt_header_is_a_clean_error(starter_path, tmp_path):
    bad = tmp_path / "corrupt.gguf"
    data = bytearray(starter_path.read_bytes()[:2_000_000])
    data[24:32] = b"\xff" * 8  # the first key's length becomes absurd
    bad.write_bytes(bytes(data))
    out = kit("info", str(bad))
    assert out.returncode == 1 and "Traceback" not in out.stderr


def test_interactive_chat_session():
    script = "\n".join([
        "/set temperature 0",
        "/set temperature -3",
        "What is the capital of France?",
        "/clear",
        "/help",
        "/bye",
    ]) + "\n"
    out = kit("chat", "smollm2:135m", "--max-tokens", "40", input=script)
    assert out.returncode == 0, out.stderr
    assert "Set temperature to 0" in out.stdout
    assert "Not set" in out.stdout and "temperature" in out.stdout
    assert "Paris" in out.stdout
    assert "Conversation cleared." in out.stdout and "/bye" in out.stdout


def test_doctor_prints_verdicts_and_exit_code():
    out = kit("doctor", "--timeout", "0.5")
    assert "[OK]" in out.stdout
    fails = "[FAIL]" in out.stdout
    assert out.returncode == (1 if fails else 0)


def test_set_system_clears_the_conversation():
    conv = Conversation()
    conv.add("user", "hi")
    opts = {}
    assert "cleared" in _chat_set(conv, opts, "/set system Be brief.")
    assert conv.system == "Be brief." and conv.turns == []
    assert "Unknown setting" in _chat_set(conv, opts, "/set colour blue")


def test_main_returns_exit_codes_in_process(capsys):
    assert main(["info", "smollm2:135m"]) == 0
    assert "llama" in capsys.readouterr().out
