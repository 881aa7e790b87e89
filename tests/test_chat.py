"""Conversation trimming on the real model: visible, never silent."""
import pytest

from kit.chat import Conversation
from kit.engines import load
from kit.errors import PromptTooLong


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
    assert conv.notices and "Dropped the oldest" in conv.notices[0]
    assert len(conv.notices) == 25 - len(conv.turns)


def test_a_single_turn_too_long_is_an_error(model):
    conv = Conversation()
    conv.add("user", "book " * 400)
    with pytest.raises(PromptTooLong):
        conv.fit(model)
