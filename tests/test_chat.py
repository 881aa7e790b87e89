"""Conversations on the real model: context accounting, trimming (visible,
never silent), asking and stopping, and transcript export with provenance."""
import json
import types

import pytest

from kit.chat import (Conversation, ContextUsage, export, model_provenance,
                      to_markdown, transcript_data)
from kit.engines import load
from kit.errors import KitError, PromptTooLong
from kit.models.starter import STARTER


@pytest.fixture(scope="module")
def model():
    return load("smollm2:135m", n_ctx=256, quiet=True)


def test_messages_put_the_system_prompt_first():
    conv = Conversation(system="Be brief.")
    conv.add("user", "hi")
    assert conv.messages[0] == {"role": "system", "content": "Be brief."}
    with pytest.raises(ValueError):
        conv.add("robot", "beep")


def test_oldest_turns_are_dropped_with_a_notice(model):
    conv = Conversation(system="Be brief.")
    for i in range(12):
        conv.add("user", f"Question number {i} about libraries and books?")
        conv.add("assistant", f"Answer number {i}: libraries lend books to people.")
    conv.add("user", "Last question?")
    msgs = conv.fit(model, reserve=64)
    used = len(model.tokenize(model.format_chat(msgs)))
    assert used <= 256 - 64
    assert msgs[0]["role"] == "system" and msgs[-1]["content"] == "Last question?"
    assert len(conv.notices) == 1  # one notice per trim, with the count
    assert f"Dropped the oldest {25 - len(conv.turns)} turns" in conv.notices[0]


def test_a_single_turn_too_long_is_an_error(model):
    conv = Conversation()
    conv.add("user", "book " * 400)
    with pytest.raises(PromptTooLong):
        conv.fit(model)


# ---- context accounting, asking, export -------------------------------------


def test_usage_counts_the_templated_tokens(model):
    conv = Conversation(system="Be brief.")
    conv.add("user", "What is a library?")
    use = conv.usage(model, reserve=64)
    assert use.used == len(model.tokenize(model.format_chat(conv.messages)))
    assert use.left == 256 - use.used and use.n_ctx == 256
    assert f"{use.used} of 256 tokens used, {use.left} left" in use.line()
    over = ContextUsage(475, 256, 32).line()
    assert "475 tokens: 219 more than the 256-token context window" in over
    assert "0 left" not in over
    assert Conversation().usage(model) == ContextUsage(0, 256, 256)


def test_ask_streams_then_keeps_the_answer_with_figures(model):
    conv = Conversation(system="Answer in one short sentence.")
    stream = conv.ask(model, "What is the capital of France?", temperature=0,
                      max_tokens=24)
    pieces = list(stream)
    assert len(pieces) > 1  # streamed, not one block
    answer = "".join(pieces)
    assert "Paris" in answer
    assert conv.turns[-1] == {"role": "assistant", "content": answer}
    last = conv.transcript[-1]
    assert last["model"] == "smollm2:135m" and last["settings"]["temperature"] == 0
    assert last["stats"]["generated_tokens"] == stream.stats.generated_tokens > 0


def test_a_stopped_answer_is_kept_as_far_as_it_got(model):
    conv = Conversation()
    stream = conv.ask(model, "Tell me a long story about a cat.", max_tokens=200,
                      seed=3)
    got = []
    for piece in stream:
        got.append(piece)
        if len(got) == 3:
            stream.cancel()  # as the Stop button does, from any thread
    assert stream.stats.stop_reason == "cancelled"
    assert stream.stats.generated_tokens < 10
    assert conv.turns[-1]["content"] == "".join(got)
    assert conv.transcript[-1]["stats"]["stop_reason"] == "cancelled"


def test_ask_refuses_empty_and_too_long_and_leaves_no_turn(model):
    conv = Conversation()
    with pytest.raises(KitError, match="empty"):
        conv.ask(model, "   ")
    with pytest.raises(PromptTooLong):
        conv.ask(model, "book " * 400)
    assert conv.turns == [] and conv.transcript == []
    with pytest.raises(KitError, match="temperature"):
        conv.ask(model, "hi", temperature=-1)


def test_trimming_is_written_into_the_transcript(model):
    conv = Conversation()
    for i in range(10):
        conv.add("user", f"Question {i} about the opening hours of the library?")
        conv.add("assistant", f"Answer {i}: the library opens at nine o'clock.")
    stream = conv.ask(model, "And on Sunday?", max_tokens=8, temperature=0)
    stream.text
    notes = [t for t in conv.transcript if t["role"] == "notice"]
    assert notes and notes[0]["content"] == conv.notices[0]
    assert "> Note: Dropped the oldest" in to_markdown(transcript_data(conv, model))


def test_export_writes_markdown_and_json_with_provenance(model, tmp_path):
    conv = Conversation(system="Be brief.")
    conv.ask(model, "Name a colour.", max_tokens=8, temperature=0).text
    md_path, js_path = export(conv, tmp_path / "out", model, stem="talk")
    assert (md_path.name, js_path.name) == ("talk.md", "talk.json")
    assert not list((tmp_path / "out").glob("*.partial"))
    data = json.loads(js_path.read_text())
    assert data["model"]["sha256"] == STARTER["sha256"]
    assert data["model"]["quantization"] == "Q4_1" and data["model"]["n_ctx"] == 256
    assert [t["role"] for t in data["turns"]] == ["user", "assistant"]
    assert data["turns"][1]["stats"]["gen_tps"] >= 0
    md = md_path.read_text()
    assert "## System prompt\n\nBe brief." in md and "Name a colour." in md
    assert data["turns"][1]["content"] in md and STARTER["sha256"] in md
    assert "temperature 0, max_tokens 8" in md


def test_export_to_a_folder_that_cannot_exist_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(KitError, match="Choose a folder"):
        export(Conversation(), blocker / "sub")


def test_provenance_hashes_a_file_the_store_does_not_know(tmp_path):
    import hashlib

    f = tmp_path / "other.gguf"
    f.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    fake = types.SimpleNamespace(name="other", path=f, engine_name="llama.cpp",
                                 n_ctx=512)
    info = model_provenance(fake)
    assert info["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert info["file"] == "other.gguf" and info["quantization"] is None


def test_notebook_06_raw_example_writes_a_continuation(model):
    """The "continue a text" cell must show text (a bare question gave none)."""
    import re
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks"
                     / "06_chat.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    first = next(m.group(1) for src in code
                 if (m := re.search(r'model\.generate\("([^"]+)"', src)))
    assert not first.rstrip().endswith("?")
    stream = model.generate(first, temperature=0, max_tokens=60)
    assert len(stream.text.split()) > 5 and stream.stats.generated_tokens > 10


def test_kit_chat_from_a_pipe_echoes_each_question():
    import os
    import subprocess
    import sys

    script = "What is the capital of France? One word.\n/bye\n"
    out = subprocess.run([sys.executable, "-m", "kit", "chat", "smollm2:135m",
                          "--max-tokens", "8", "--temperature", "0"], input=script,
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr
    # the transcript reads as a conversation: each prompt, then what was typed
    assert ">>> What is the capital of France? One word.\n" in out.stdout
    assert ">>> /bye\n" in out.stdout
