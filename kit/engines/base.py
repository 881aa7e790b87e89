"""What every engine offers: sampling settings, figures, and a text stream.

An engine turns a prompt (or chat messages) into a Stream: iterate it to get
text pieces as they are generated; afterwards `stream.stats` holds the figures.

>>> stream = model.generate("Once upon a time", max_tokens=20)
>>> text = "".join(stream); print(stream.stats.line())
"""
from __future__ import annotations

import codecs
import math
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Callable, Iterator

from kit.errors import BadParameter

STOP_REASONS = {
    "eos": "the model ended its answer",
    "length": "reached max_tokens",
    "stop": "hit a stop string",
    "context": "the context window is full",
    "cancelled": "stopped by you",
    "cut": "the server ended it without saying why (cut off?)",
}


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen. Defaults follow llama.cpp's."""

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int | None = None
    max_tokens: int = 256
    stop: tuple[str, ...] = ()

    def __post_init__(self):
        def need(ok, name, allowed):
            if not ok:
                raise BadParameter(name, getattr(self, name), allowed)

        num = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
        need(num(self.temperature) and 0 <= self.temperature <= 5,
             "temperature", "between 0 and 5 (0 = always the likeliest token)")
        need(num(self.top_p) and 0 < self.top_p <= 1, "top_p", "above 0 and at most 1")
        need(isinstance(self.top_k, int) and self.top_k >= 0,
             "top_k", "0 (off) or a positive whole number")
        need(num(self.min_p) and 0 <= self.min_p <= 1, "min_p", "between 0 and 1")
        need(num(self.repeat_penalty) and 0 < self.repeat_penalty <= 10,
             "repeat_penalty", "above 0 and at most 10 (1 = off)")
        need(self.seed is None or (isinstance(self.seed, int) and 0 <= self.seed < 2**32),
             "seed", "a whole number from 0 to 4294967295, or None for random")
        need(isinstance(self.max_tokens, int) and self.max_tokens >= 1,
             "max_tokens", "a whole number of at least 1")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(s for s in self.stop if s))

    @classmethod
    def make(cls, sampling: "Sampling | None" = None, **overrides) -> "Sampling":
        """A Sampling from another one plus keyword overrides (None = keep)."""
        base = sampling or cls()
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"Unknown sampling option(s): {', '.join(sorted(unknown))}. "
                            f"Known: {', '.join(sorted(names))}")
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Stats:
    """The figures of one generation call."""

    prompt_tokens: int = 0
    prompt_cached: int = 0  # prompt tokens reused from the previous call
    generated_tokens: int = 0
    ttft_s: float = 0.0  # time to first token
    total_s: float = 0.0
    prompt_tps: float = 0.0
    gen_tps: float = 0.0
    stop_reason: str = ""
    notices: list[str] = field(default_factory=list)

    def line(self) -> str:
        why = STOP_REASONS.get(self.stop_reason, self.stop_reason)
        return (f"{self.prompt_tokens} prompt tokens ({self.prompt_tps:.0f} tok/s), "
                f"{self.generated_tokens} generated ({self.gen_tps:.1f} tok/s), "
                f"first token after {self.ttft_s:.2f} s, "
                f"stopped: {why}")

    def to_dict(self) -> dict:
        return asdict(self)


class Stream:
    """Text pieces as they are generated; `.text` and `.stats` when done.

    Call `.cancel()` (from another thread, e.g. a Stop button) to end early.
    """

    def __init__(self, pieces: Callable[["Stream"], Iterator[str]]):
        self.stats = Stats()
        self._pieces = pieces
        self._parts: list[str] = []
        self._cancel = threading.Event()
        self._started = False
        self.done = False
        # With logprobs=True: one kit.probs.TokenProb per generated token, and
        # after each text piece, how many tokens it had reached (piece_ends).
        self.logprobs: list | None = None
        self.piece_ends: list[int] = []

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[str]:
        if self._started:
            yield from list(self._parts)
            return
        self._started = True
        for piece in self._pieces(self):
            self._parts.append(piece)
            if self.logprobs is not None:
                self.piece_ends.append(len(self.logprobs))
            yield piece
        self.done = True

    @property
    def text(self) -> str:
        """The whole answer (runs the generation to the end if needed)."""
        if not self.done:
            for _ in self:
                pass
        return "".join(self._parts)

    def __str__(self) -> str:
        return self.text


class StopScanner:
    """Holds back text that may be the start of a stop string.

    >>> s = StopScanner(["###"]); s.feed("Hi #"), s.feed("## x")
    ('Hi ', '')
    """

    def __init__(self, stops):
        self.stops = tuple(stops)
        self.pending = ""
        self.hit = False

    def feed(self, piece: str) -> str:
        if self.hit:  # nothing passes after a stop string
            return ""
        self.pending += piece
        if not self.stops:
            out, self.pending = self.pending, ""
            return out
        cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0),
                  default=-1)
        if cut >= 0:
            self.hit = True
            out, self.pending = self.pending[:cut], ""
            return out
        keep = 0  # longest tail that could still grow into a stop string
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(s[:k]):
                    keep = max(keep, k)
                    break
        out = self.pending[: len(self.pending) - keep]
        self.pending = self.pending[len(self.pending) - keep:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


class Clock:
    """Times one generation: start, each token, then the figures at the end."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.first = self.last = None

    def tick(self) -> None:
        """A token arrived (the first one marks the time to first token)."""
        self.last = time.perf_counter()
        if self.first is None:
            self.first = self.last

    def finish(self, st: Stats, reason: str, evaluated: int, n_ctx: int = 0) -> None:
        """Fill in the end-of-generation figures of `st`.

        evaluated: the prompt tokens actually read this call (not the cached
        ones), so prompt tok/s counts real work.
        """
        end = time.perf_counter()
        st.stop_reason, st.total_s = reason, end - self.t0
        st.ttft_s = (self.first or end) - self.t0
        st.prompt_tps = evaluated / st.ttft_s if st.ttft_s > 0 else 0.0
        if st.generated_tokens > 1 and self.first and self.last > self.first:
            st.gen_tps = (st.generated_tokens - 1) / (self.last - self.first)
        if reason == "context":
            st.notices.append(f"Stopped: the context window ({n_ctx} tokens) "
                              "is full. Load with a larger n_ctx for longer answers.")


def token_loop(tokens, s: Sampling, stream: Stream, clock: Clock, *, piece, is_end,
               n_prompt: int, n_ctx: int):
    """Text pieces from generated token ids, with every way to stop.

    tokens: an iterator of ids (the engine's sampler); piece(id): its bytes;
    is_end(id): an end-of-generation token. Returns (as a generator's value)
    the stop reason: eos, stop, cancelled, length or context.
    """
    st = stream.stats
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    scanner = StopScanner(s.stop)
    reason = "length"
    for token in tokens:
        clock.tick()
        if is_end(token):
            reason = "eos"
            break
        st.generated_tokens += 1
        out = scanner.feed(decoder.decode(piece(token)))
        if out:
            yield out
        if halted := halt_reason(scanner, stream):
            reason = halted
            break
        if st.generated_tokens >= s.max_tokens:
            break
        if n_prompt + st.generated_tokens >= n_ctx:
            reason = "context"
            break
    tail = scanner.flush() + decoder.decode(b"", final=True) if not scanner.hit else ""
    if tail:
        yield tail
    return reason


def halt_reason(scanner: StopScanner, stream) -> str | None:
    """'stop' once a stop string is seen, 'cancelled' once asked to stop, else None."""
    if scanner.hit:
        return "stop"
    return "cancelled" if stream.cancelled else None


def refuse_logprobs(engine, kw: dict) -> None:
    """For engines that cannot report probabilities: say so, never ignore it."""
    if kw.pop("logprobs", None) or kw.pop("top_logprobs", None):
        from kit.probs import no_probabilities

        raise no_probabilities(engine.engine_name)


class Engine(ABC):
    """A loaded model. Engines: llama.cpp (kit.engines.llamacpp), more later."""

    engine_name = "base"
    capabilities: dict = {}

    def __init__(self, name: str, path, n_ctx: int):
        self.name, self.path, self.n_ctx = name, path, n_ctx

    @abstractmethod
    def generate(self, prompt: str, sampling: Sampling | None = None, **kw) -> Stream:
        """Continue `prompt`; keyword arguments override `sampling`."""

    @abstractmethod
    def chat(self, messages: list[dict], sampling: Sampling | None = None, **kw) -> Stream:
        """Answer a conversation ([{"role": "user", "content": "..."}])."""

    @abstractmethod
    def tokenize(self, text: str) -> list[int]:
        """The token ids the model sees for `text`."""

    def next_tokens(self, text_or_messages, k: int = 10):
        """The k likeliest next tokens (llama.cpp engine; see kit.probs)."""
        from kit.probs import no_probabilities

        raise no_probabilities(self.engine_name)

    def embed(self, texts, **options):
        """One vector per text (embedding models only; see kit.engines.embed)."""
        from kit.errors import NotAnEmbeddingModel

        raise NotAnEmbeddingModel(self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} n_ctx={self.n_ctx}>"
