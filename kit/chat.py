"""A conversation: system prompt, turns, context accounting, trimming, export.

>>> conv = Conversation(system="Answer in one sentence.")
>>> for piece in conv.ask(model, "What is a token?"):
...     print(piece, end="")              # the answer is kept in conv.turns
>>> print(conv.usage(model).line())       # '41 of 2048 tokens used, ...'
>>> export(conv, "transcripts", model)    # chat-....md and chat-....json
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kit.engines.base import Sampling, Stream
from kit.errors import EmptyMessage, FolderNotWritable, PromptTooLong
from kit.models.registry import installed
from kit.util import atomic_write_text, remember_sha256, sha256_cached
from kit import __version__
from kit.settings import get_settings

ROLES = ("system", "user", "assistant")
RESERVE = 256  # tokens kept free for the answer when trimming


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ContextUsage:
    """Tokens the conversation takes in the model's context window."""

    used: int
    n_ctx: int
    reserve: int

    @property
    def left(self) -> int:
        return max(0, self.n_ctx - self.used)

    def line(self) -> str:
        if self.used > self.n_ctx:  # more than fits: say so in words
            return (f"{self.used} tokens: {self.used - self.n_ctx} more than the "
                    f"{self.n_ctx}-token context window holds; the oldest turns "
                    "will be dropped at the next question")
        return (f"{self.used} of {self.n_ctx} tokens used, {self.left} left "
                f"({self.reserve} kept free for the answer)")


class _RecordedStream(Stream):
    """The model's stream; when it ends, the answer joins the conversation."""

    def __init__(self, inner: Stream, on_done):
        super().__init__(self._relay)
        self.inner, self.stats, self._on_done = inner, inner.stats, on_done

    def cancel(self) -> None:
        super().cancel()
        self.inner.cancel()

    def _relay(self, _stream):
        try:
            yield from self.inner
        finally:  # also when stopped early: a partial answer is still said
            if self.inner._started:
                self._on_done(self)


@dataclass
class Conversation:
    system: str = ""
    turns: list[dict] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    # Everything said, never trimmed, with figures: what export() writes.
    transcript: list[dict] = field(default_factory=list)

    def add(self, role: str, content: str, **details) -> None:
        if role not in ROLES[1:]:
            raise ValueError(f"role must be 'user' or 'assistant', not {role!r}")
        self.turns.append({"role": role, "content": content})
        self.transcript.append({"role": role, "content": content, "time": _now(),
                                **details})

    def clear(self) -> None:
        """Forget the turns, notices and transcript (the system prompt stays)."""
        self.turns.clear()
        self.notices.clear()
        self.transcript.clear()

    @property
    def messages(self) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + list(self.turns)

    def usage(self, model, reserve: int = RESERVE) -> ContextUsage:
        """Tokens the messages take with the model's chat template."""
        used = len(model.tokenize(model.format_chat(self.messages))) if self.messages else 0
        return ContextUsage(used, model.n_ctx, reserve)

    def fit(self, model, reserve: int = RESERVE) -> list[dict]:
        """Messages that fit the model's context with `reserve` tokens to answer.

        The oldest turns are dropped first, and each drop is recorded in
        `notices` (and the transcript), so it never happens silently.
        """
        budget = model.n_ctx - reserve
        dropped, before = 0, None
        while True:
            used = len(model.tokenize(model.format_chat(self.messages)))
            before = used if before is None else before
            if used <= budget or len(self.turns) <= 1:
                break
            self.turns.pop(0)
            dropped += 1
        if dropped:  # one notice per trim, however many turns went
            turns = "turn" if dropped == 1 else f"{dropped} turns"
            note = (f"Dropped the oldest {turns} to make room for the answer: the "
                    f"conversation took {before} tokens, the context window holds "
                    f"{model.n_ctx} and {reserve} are kept free; now {used}.")
            self.notices.append(note)
            self.transcript.append({"role": "notice", "content": note, "time": _now()})
        if used > model.n_ctx - 1:
            raise PromptTooLong(used, model.n_ctx)
        return self.messages

    def ask(self, model, text: str, sampling: Sampling | None = None,
            reserve: int = RESERVE, **overrides) -> Stream:
        """Add the user's text, trim to fit, and stream the model's answer.

        The answer (even a stopped one) is added to the conversation with its
        figures when the stream ends. Stop it with `.cancel()`.
        """
        if not text.strip():
            raise EmptyMessage()
        s = Sampling.make(sampling, **overrides)  # a bad setting fails here
        self.add("user", text)
        try:
            messages = self.fit(model, reserve=min(reserve, s.max_tokens))
        except PromptTooLong:
            self.turns.pop()
            self.transcript.pop()
            raise
        settings = {k: v for k, v in asdict(s).items() if k != "stop"}

        def done(stream):
            self.add("assistant", stream.inner.text, model=model.name,
                     settings=settings, stats=stream.stats.to_dict())

        return _RecordedStream(model.chat(messages, s), done)


# ---- export: Markdown and JSON, with where the answers came from -------------

def model_provenance(model) -> dict:
    """Name, file, sha256, quantization and context of a loaded model."""
    path = Path(str(model.path))
    info = {"name": model.name, "file": path.name, "engine": model.engine_name,
            "n_ctx": model.n_ctx, "sha256": None, "quantization": None}
    facts = getattr(model, "facts", None)
    if facts is not None:
        info["quantization"] = facts.quantization
    try:
        known = installed().get(model.name, {})
        if known.get("sha256") and Path(known["path"]) == path:
            remember_sha256(path, known["sha256"])  # verified when installed
        info["sha256"] = sha256_cached(path)
    except OSError:
        pass  # the file moved since loading: say so with sha256 None
    return info


def transcript_data(conv: Conversation, model=None) -> dict:
    """The whole conversation as plain data (json.dumps works on it)."""

    return {"kit_version": __version__, "exported": _now(),
            "model": model_provenance(model) if model is not None else None,
            "system": conv.system, "turns": list(conv.transcript)}


def to_markdown(data: dict) -> str:
    """A transcript (from transcript_data) as Markdown a person can read."""
    m = data.get("model") or {}
    lines = ["# Chat transcript", ""]
    if m:
        lines += [f"- Model: {m['name']} ({m.get('quantization') or '?'}, "
                  f"file {m['file']}, context {m['n_ctx']} tokens)",
                  f"- File sha256: {m.get('sha256') or 'unknown'}"]
    lines += [f"- Exported: {data['exported']} by kit {data['kit_version']}", ""]
    if data.get("system"):
        lines += ["## System prompt", "", data["system"], ""]
    for turn in data["turns"]:
        if turn["role"] == "notice":
            lines += [f"> Note: {turn['content']}", ""]
            continue
        lines += [f"## {turn['role'].capitalize()}", "", turn["content"], ""]
        st, s = turn.get("stats"), turn.get("settings")
        if st:
            lines += [f"*{st['generated_tokens']} tokens at {st['gen_tps']:.1f} tok/s, "
                      f"first token after {st['ttft_s']:.2f} s, stopped: "
                      f"{st['stop_reason']}; temperature {s['temperature']}, "
                      f"max_tokens {s['max_tokens']}, seed {s['seed']}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def default_folder() -> Path:
    """Where transcripts go unless told otherwise: $KIT_HOME/transcripts."""

    return get_settings().home / "transcripts"


def export(conv: Conversation, folder=None, model=None, stem: str | None = None
           ) -> tuple[Path, Path]:
    """Write the transcript as STEM.md and STEM.json in folder; return both paths."""
    folder = Path(folder or default_folder()).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FolderNotWritable(what="create the folder", folder=folder,
                                problem=exc.strerror) from exc
    stem = stem or "chat-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    data = transcript_data(conv, model)
    md, js = folder / f"{stem}.md", folder / f"{stem}.json"
    try:
        atomic_write_text(md, to_markdown(data))
        atomic_write_text(js, json.dumps(data, indent=2, ensure_ascii=False))
    except OSError as exc:
        raise FolderNotWritable(what="write the transcript to", folder=folder,
                                problem=exc.strerror) from exc
    return md, js
