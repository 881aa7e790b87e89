"""Guards around code that a model file or a request controls.

A chat template is a small program inside the model file (Jinja): it may
loop, recurse or be broken, and a message may carry the template's own
control tokens. These guards bound the time it runs, explain its errors,
and keep control-token text in messages as plain text. Notebook 01.

>>> with rendering_chat("smollm2:135m"):
...     prompt = formatter(messages=messages).prompt
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

from kit.errors import ChatTemplateError

TEMPLATE_SECONDS = 10.0  # a chat template renders in milliseconds; loops never end


class _Expired(BaseException):
    """Raised inside the block (not an Exception, so nothing in it catches it)."""


@contextmanager
def time_limit(seconds: float, error):
    """Let the block's Python code run `seconds` at most, else raise error().

    Chat templates (Jinja) and the schema converter are Python code that a
    model file or a request controls: checking the clock at each call it
    makes cuts off one that loops. Native code (llama.cpp) is not checked.
    """
    deadline = time.monotonic() + seconds
    before = sys.gettrace()  # a debugger's, say: keep it working

    def check(frame, event, arg):
        if time.monotonic() > deadline:
            raise _Expired()
        return before(frame, event, arg) if before else None

    sys.settrace(check)
    try:
        yield
    except _Expired:
        raise error() from None
    finally:
        sys.settrace(before)


@contextmanager
def template_errors(name: str, rendering: bool = False):
    """A broken chat template as a ChatTemplateError, not a Jinja traceback.

    rendering: the block only renders, so a ValueError is the template's own
    raise_exception(...) (elsewhere, say in loading, it means something else).
    """
    import jinja2

    def fail(problem):
        return ChatTemplateError(name=name, problem=problem)

    try:
        yield
    except jinja2.TemplateSyntaxError as exc:
        raise fail(f"a syntax error on line {exc.lineno} ({exc.message})") from None
    except jinja2.exceptions.SecurityError as exc:
        raise fail(f"it tried something the sandbox forbids ({exc})") from None
    except RecursionError:
        raise fail("it calls itself without end") from None
    except jinja2.TemplateError as exc:
        raise fail(f"{type(exc).__name__}: {exc}") from None
    except ValueError as exc:
        if not rendering:
            raise
        raise fail(f"it refused this conversation ({exc})") from None


def template_seconds() -> float:
    """The time a chat template may take: $KIT_TEMPLATE_SECONDS, else 10 s."""
    try:
        return float(os.environ.get("KIT_TEMPLATE_SECONDS") or TEMPLATE_SECONDS)
    except ValueError:
        return TEMPLATE_SECONDS


@contextmanager
def rendering_chat(name: str, seconds: float | None = None):
    """Render a model's chat template: bounded in time, errors explained."""
    seconds = template_seconds() if seconds is None else seconds
    too_slow = f"it did not finish within {seconds:g} s (it may loop for ever)"
    with template_errors(name, rendering=True):
        with time_limit(seconds, lambda: ChatTemplateError(name=name, problem=too_slow)):
            yield


def special_spans(text: str, messages, specials) -> list[tuple[int, int]]:
    """Where in `text` the message contents holding control-token text lie.

    The kit reads those spans as plain text, so a message that writes
    '<|im_start|>system' cannot open a turn of its own (role injection).
    An empty list: no content holds such text, tokenize as usual.
    """
    spans, pos = [], 0
    for m in messages:
        content = m.get("content") if isinstance(m, dict) else None
        if not isinstance(content, str) or not content:
            continue
        risky = any(s in content for s in specials)
        at = text.find(content, pos)
        if at < 0 and risky:  # the template trimmed it, perhaps
            content = content.strip()
            at = text.find(content, pos)
        if at < 0:
            if risky:
                raise ChatTemplateError(
                    name="this model", problem="it changes the message text, so the "
                    "control tokens written in a message cannot be kept as plain text; "
                    "remove them (for example '<|im_start|>') from the message")
            continue
        if risky:
            spans.append((at, at + len(content)))
        pos = at + len(content)
    return spans
