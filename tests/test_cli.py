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
    out = kit("run", "smollm2:135m", "What is the capital of France? Answer in one word.",
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
        "What is the capital of France? Answer in one word.",
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


# ---- the edges a newcomer meets ------------------------------------------------

def _default_sigint():
    # A shell that starts the tests in the background leaves SIGINT ignored,
    # and a child would inherit that: Ctrl-C must reach kit as at a terminal.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(*args, **kw):
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "kit", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            preexec_fn=_default_sigint, **kw)
    watchdog = threading.Timer(120, proc.kill)  # a hang fails the test, never the run
    watchdog.daemon = True
    watchdog.start()
    return proc


def _read_until(stream, marker: str, limit: int = 20_000) -> str:
    seen = ""
    while marker not in seen and len(seen) < limit:
        ch = stream.read(1)
        if not ch:
            break
        seen += ch
    return seen


def test_kit_alone_prints_help():
    out = kit()
    assert out.returncode == 0 and "run" in out.stdout and "error" not in out.stderr


def test_a_closed_pipe_is_not_a_traceback():
    proc = subprocess.run(f"{sys.executable} -m kit info smollm2:135m --json | head -1",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "{" and "Traceback" not in proc.stderr
    assert "BrokenPipe" not in proc.stderr


def test_bad_settings_are_refused_before_loading():
    out = kit("run", "smollm2:135m", "hi", "--temperature", "-1")
    assert out.returncode == 1 and "Loaded" not in out.stderr


def test_a_text_file_is_not_called_a_damaged_model(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    out = kit("run", str(notes), "hi")
    assert out.returncode == 1 and "not a model file" in out.stderr
    assert "delete" not in out.stderr and "kit list" in out.stderr


def test_name_clash_on_import_says_taken_and_the_option(starter_path, kit_home):
    assert kit("import", str(starter_path), "--name", "mine:1", "--in-place",
               ).returncode == 0
    out = kit("import", str(starter_path), "--name", "mine:1", "--in-place")
    assert out.returncode == 1 and "taken" in out.stderr
    assert "out of range" not in out.stderr and "force=True" not in out.stderr
    assert "--force" in out.stderr


def test_chat_set_and_unknown_commands_explain_themselves():
    conv, opts = Conversation(), {}
    said = _chat_set(conv, opts, "/set seed abc")
    assert said == "Not set: seed must be a whole number, e.g. /set seed 42"
    assert opts == {}
    out = kit("chat", "smollm2:135m", input="/nope\n/bye\n")
    assert "Unknown command /nope" in out.stdout and "/set temperature" in out.stdout


def test_ctrl_c_at_the_chat_prompt_does_not_leave():
    import signal

    proc = _start("chat", "smollm2:135m", stdin=subprocess.PIPE)
    try:
        assert ">>> " in _read_until(proc.stdout, ">>> ")
        proc.send_signal(signal.SIGINT)
        assert "/bye" in _read_until(proc.stdout, ">>> ")  # still there, says how
        proc.stdin.write("/bye\n")
        proc.stdin.flush()
        assert proc.wait(60) == 0
    finally:
        proc.kill()


def test_ctrl_c_stops_kit_run_with_a_reason_and_code_130():
    import signal

    proc = _start("run", "smollm2:135m", "Write a long story about a library.",
                  "--max-tokens", "1000", "--temperature", "0.7", "--seed", "1")
    try:
        assert "Loaded" in _read_until(proc.stdout, "\n")
        assert len(proc.stdout.read(8)) == 8  # the answer is streaming
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "stopped by you" in err.lower() and "stopped: \n" not in err
    assert "Traceback" not in err


def test_run_without_a_prompt_at_a_terminal_opens_a_chat():
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "kit", "run", "smollm2:135m"],
                            stdin=follower, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        os.write(leader, b"/bye\n")
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 0 and "starting a chat" in err
    assert "Chatting with smollm2:135m" in out


def test_offline_search_and_pull_fail_at_once_without_retry_lines():
    env = {**os.environ, "HF_ENDPOINT": "http://hub.invalid"}
    env.pop("HF_HUB_OFFLINE", None)
    for args in (["search", "smollm2"], ["pull", "hf.co/someone/Some-GGUF:Q4_K_M"]):
        out = subprocess.run([sys.executable, "-m", "kit", *args], env=env,
                             capture_output=True, text=True, timeout=120)
        said = out.stdout + out.stderr  # (search still lists catalog matches)
        assert "cannot be looked up" in said, said
        assert "Retry" not in said and "Traceback" not in said


def test_one_thread_is_singular():
    out = kit("run", "smollm2:135m", "hi", "--threads", "1", "--max-tokens", "4")
    said = out.stdout + out.stderr
    assert out.returncode == 0 and "1 thread," in said and "1 threads" not in said
