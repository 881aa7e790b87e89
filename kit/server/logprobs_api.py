"""Token probabilities on the server (notebook 07): the shapes OpenAI's and
Ollama's clients parse, from the kit.probs.TokenProb list an engine records.

OpenAI chat: choices[0].logprobs = {"content": [{token, logprob, bytes,
top_logprobs: [...]}]}; OpenAI completions: {tokens, token_logprobs,
top_logprobs: [{token: logprob}], text_offset}; Ollama: "logprobs":
[{token, logprob, top_logprobs: [...]}] beside each piece of text.

>>> pieces = Pieces(made)             # made["stream"]: the model's Stream
>>> chunk["logprobs"] = openai_chat(pieces.next())
"""
from __future__ import annotations

from kit.server.models import BadRequest

MAX_TOP = 20  # what OpenAI and Ollama allow


def options(want, top, api: str) -> dict:
    """Engine keywords from a request's fields; a clear 400 when out of range."""
    if top is not None and not (isinstance(top, int) and 0 <= top <= MAX_TOP):
        raise BadRequest(f"top_logprobs must be a whole number from 0 to {MAX_TOP} "
                         f"({api}); got {top!r}.")
    if not want and not top:
        return {}
    return {"logprobs": True, "top_logprobs": top or 0}


class Pieces:
    """Hands out the tokens behind each streamed piece of text, in order."""

    def __init__(self, made: dict):
        self.made, self.sent, self.start = made, 0, 0

    def _stream(self):
        stream = self.made.get("stream")
        return stream if stream is not None and stream.logprobs is not None else None

    def next(self):
        """The tokens of the next piece (None when probabilities were not asked)."""
        stream = self._stream()
        if stream is None:
            return None
        ends = stream.piece_ends
        end = ends[self.sent] if self.sent < len(ends) else len(stream.logprobs)
        self.sent += 1
        out, self.start = stream.logprobs[self.start:end], max(self.start, end)
        return out

    def all(self):
        stream = self._stream()
        return None if stream is None else list(stream.logprobs)


def _entry(t) -> dict:
    return {"token": t.text, "logprob": t.logprob, "bytes": list(t.bytes)}


def openai_chat(tokens) -> dict | None:
    if tokens is None:
        return None
    return {"content": [{**_entry(t), "top_logprobs": [_entry(c) for c in t.top]}
                        for t in tokens], "refusal": None}


def openai_completion(tokens, offset: int = 0) -> dict | None:
    """The older completions shape; offset: where the first token's text starts."""
    if tokens is None:
        return None
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.text)
    return {"tokens": [t.text for t in tokens],
            "token_logprobs": [t.logprob for t in tokens],
            "top_logprobs": [{c.text: c.logprob for c in t.top} for t in tokens],
            "text_offset": offsets}


def ollama(tokens) -> dict:
    """{"logprobs": [...]} to merge into an Ollama answer, or {} if not asked."""
    if tokens is None:
        return {}
    return {"logprobs": [{"token": t.text, "logprob": t.logprob,
                          "bytes": list(t.bytes),
                          "top_logprobs": [{"token": c.text, "logprob": c.logprob,
                                            "bytes": list(c.bytes)} for c in t.top]}
                         for t in tokens]}
