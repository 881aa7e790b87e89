"""The few private parts of llama-cpp-python the kit still needs, in one place
(notebooks 01 and 03: the engine, and quantizing).

Everything else goes through llama-cpp-python's public API (`Llama`,
`LlamaGrammar`, the `grammar=` argument) or llama.cpp's C functions that it
exports (`llama_cpp.llama_vocab_*`, `llama_cpp.llama_model_quantize`...).
What is here has no public way yet; tests/test_engine_llama_private.py fails
loudly when a new llama-cpp-python version renames or removes one of these.

>>> restore_log_handler()     # after kit.quantize listened to llama.cpp's log
"""
from __future__ import annotations

import ctypes

# Why each is private-only (checked by the test above):
USED = {
    # llama.cpp logs through one global callback. kit.quantize sets its own
    # while quantizing (to show progress) and must then hand logging back to
    # llama-cpp-python's handler, which only exists in its private _logger.
    "llama_cpp._logger.llama_log_callback":
        "llama-cpp-python's own log handler, to restore after quantizing",
}


def restore_log_handler() -> None:
    """Give llama.cpp's log back to llama-cpp-python's own handler."""
    import llama_cpp
    from llama_cpp import _logger

    llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
