"""The parts of llama-cpp-python the kit relies on still exist in this version.

If one of these fails after upgrading llama-cpp-python, the kit would break in
a lesson: fix kit/engines/llama_private.py (private parts) or the caller named.
"""
import importlib
import inspect

import llama_cpp
import pytest

from kit.engines.llama_private import USED, restore_log_handler


@pytest.mark.parametrize("dotted", sorted(USED))
def test_every_private_attribute_the_kit_uses_still_exists(dotted):
    module, _, attr = dotted.rpartition(".")
    found = getattr(importlib.import_module(module), attr, None)
    assert found is not None, (
        f"llama-cpp-python {llama_cpp.__version__} has no {dotted} any more; the "
        f"kit used it for: {USED[dotted]}. Update kit/engines/llama_private.py.")


def test_restoring_the_log_handler_runs():
    restore_log_handler()


@pytest.mark.parametrize("name", [
    "llama_model_get_vocab", "llama_vocab_get_text", "llama_vocab_get_add_bos",
    "llama_vocab_is_eog", "llama_vocab_get_attr", "llama_vocab_n_tokens",
    "llama_sampler_init_grammar", "llama_sampler_free", "llama_model_quantize",
    "llama_log_set", "LLAMA_TOKEN_ATTR_CONTROL", "LlamaGrammar",
])
def test_public_functions_the_kit_calls_exist(name):
    assert hasattr(llama_cpp, name), f"llama_cpp.{name} is gone ({llama_cpp.__version__})"


def test_public_llama_surface_the_engine_uses():
    # kit.engines.llamacpp reads these instead of private attributes
    for prop in ("model", "ctx"):
        assert isinstance(getattr(llama_cpp.Llama, prop), property), prop
    assert "grammar" in inspect.signature(llama_cpp.Llama.generate).parameters
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    assert "eos_token" in inspect.signature(Jinja2ChatFormatter).parameters


def test_a_loaded_model_offers_its_vocabulary_and_token_history(starter_path):
    from kit.engines.llamacpp import vocab_of

    llm = llama_cpp.Llama(str(starter_path), n_ctx=64, n_threads=1, verbose=False)
    try:
        vocab = vocab_of(llm)
        assert llama_cpp.llama_vocab_n_tokens(vocab) == llm.n_vocab()
        tokens = llm.tokenize(b"Hello there")
        llm.eval(tokens)
        assert llm.n_tokens == len(tokens)
        assert list(llm.input_ids[: llm.n_tokens]) == tokens
    finally:
        llm.close()
