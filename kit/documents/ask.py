"""Answer a question from the best chunks, each claim tied to a numbered source (notebook 08).

>>> a = answer("Can I renew a DVD?", index)        # the chat model reads 3 chunks
>>> print(a.prompt)                                  # exactly what the model read
>>> print(a)                                         # the answer, then its sources

The model is asked to end each sentence with the number of its source, like
[2]. The kit then checks what it wrote: a sentence without a source, a
source number that does not exist, or a sentence that shares few words with
the source it cites is reported in `a.notices`. This catches a model that
ignores its sources; it cannot prove an answer right.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from kit.documents.bm25 import words
from kit.documents.index import Hit, looks_english

CHAT_MODEL = "qwen2.5-coder:1.5b"  # capable enough to cite; the starter is the fallback
NOT_FOUND = "I could not find that in the documents."
# The fixed instructions come first and never change, so an engine that keeps
# the work done on a prompt's beginning (a prompt cache) reads them once; the
# sources and the question, which change, come after them.
SYSTEM = ("You answer a question using only the numbered sources you are given.\n"
          "Rules:\n"
          "- Answer in one or two full sentences that say the answer itself: a time, "
          "a price, a number of days, a name, or yes or no with the reason.\n"
          "- End each sentence with the number of the source it comes from, in "
          "square brackets: a sentence taken from source [3] ends with [3].\n"
          "- Never answer with a source number alone.\n"
          f"- If the sources do not answer the question, reply exactly: {NOT_FOUND}")
REMINDER = ("Answer the question in one or two full sentences from the sources above; "
            "end each sentence with the number of the source it comes from.")
_STOP = set("""the a an and or of to in on at for is are be it this that with as by
from can you your we our i not no do does will may if yes""".split())


_POINTER = set("""this information found source sources comes taken according see
above given stated says said answer""".split())


def chat_model_name() -> str:
    """qwen2.5-coder:1.5b when installed, else the default (starter) model."""
    from kit.models.registry import installed
    from kit.settings import get_settings

    return CHAT_MODEL if CHAT_MODEL in installed() else get_settings().default_model


def source_text(text: str) -> str:
    """A chunk as the model reads it: its lines kept (a timetable stays a
    timetable), runs of spaces and blank lines squeezed."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def build_messages(question: str, hits: list[Hit]) -> list[dict]:
    """The fixed rules (system), then the numbered sources, the question and a
    reminder of the answer's form (user).

    Each source is headed "Source [n], from FILE:" and nothing else: a header such as
    "(hours.txt, line 1)" puts a second number beside the one to cite. (A learner's
    walk got bare "1" answers from the old layout: a line number in every header,
    timetables squeezed onto one line, "Keep the answer short". Not reproduced
    here; each of the three is changed, and a bare number is now named.)
    """
    sources = "\n\n".join(f"Source [{n}], from {h.chunk.file}:\n{source_text(h.chunk.text)}"
                           for n, h in enumerate(hits, 1))
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Sources:\n\n{sources}\n\nQuestion: {question}"
                                        f"\n\n{REMINDER}"}]


@dataclass
class Claim:
    sentence: str
    sources: list[int]  # the numbers it cites
    support: float  # share of its words found in the sources it cites (0-1)


@dataclass
class Answer:
    question: str
    hits: list[Hit]
    messages: list[dict]
    prompt: str  # the text the model read, chat template included
    text: str
    model: str
    claims: list[Claim] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    stats: object = None

    def sources(self) -> str:
        cited = {n for c in self.claims for n in c.sources}
        return "\n".join(f"[{n}] {h.chunk.where()}{'' if n in cited else '  (not cited)'}"
                         for n, h in enumerate(self.hits, 1))

    def __str__(self) -> str:
        out = [self.text.strip(), "", "Sources:", self.sources()]
        return "\n".join(out + [f"NOTE: {n}" for n in self.notices])

    def _repr_pretty_(self, p, cycle) -> None:  # Jupyter shows the readable form
        p.text(str(self))


def _support(sentence: str, cited: list[int], hits: list[Hit]) -> float:
    """The share of the sentence's words found in the sources it cites (0-1)."""
    own = {w for w in words(re.sub(r"\[[\d,\s]+\]", " ", sentence))
           if w not in _STOP and len(w) > 2}
    source_words = {w for n in cited if 1 <= n <= len(hits)
                    for w in words(hits[n - 1].chunk.text)}
    return round(len(own & source_words) / len(own), 2) if own and source_words else 0.0


def split_claims(text: str, hits: list[Hit]) -> list[Claim]:
    """Sentences of the answer with the sources each cites and how well they match.

    A sentence that only points at a source ("This is found in source [2].")
    is not a claim of its own: its number goes to the sentence before it.
    """
    claims = []
    for sentence in re.split(r"(?<=[.!?\]])\s+(?=[A-Z0-9*\-])|\n+", text.strip()):
        if not re.search(r"\w", sentence):
            continue
        cited = [int(n) for group in re.findall(r"\[(\d+(?:\s*,\s*\d+)*)\]", sentence)
                 for n in group.split(",")]
        own = set(words(re.sub(r"\[[\d,\s]+\]", " ", sentence))) - _STOP
        if cited and claims and not claims[-1].sources and own <= _POINTER:
            claims[-1].sources = cited
            claims[-1].support = _support(claims[-1].sentence, cited, hits)
            continue
        claims.append(Claim(sentence.strip(), cited, _support(sentence, cited, hits)))
    return claims


def check_claims(claims: list[Claim], n_sources: int) -> list[str]:
    """What to distrust in an answer, in plain words."""
    notes = []
    for c in claims:
        short = c.sentence if len(c.sentence) < 70 else c.sentence[:67] + "..."
        if NOT_FOUND.rstrip(".") in c.sentence:
            continue
        bad = [n for n in c.sources if not 1 <= n <= n_sources]
        if bad:
            notes.append(f"\"{short}\" cites {', '.join(f'[{n}]' for n in bad)}, "
                         f"but there are only {n_sources} sources.")
        elif not c.sources:
            notes.append(f"\"{short}\" cites no source: check it yourself.")
        elif c.support < 0.5:
            notes.append(f"\"{short}\" shares few words with its source "
                         f"({c.support:.0%}): the model may not have used it.")
    return notes


def answer(question: str, index, model=None, k: int = 3, method: str = "embeddings",
           max_tokens: int = 160, temperature: float = 0.0, on_text=None,
           on_status=None, **sampling) -> Answer:
    """Search the index, then ask the chat model to answer from the top k chunks.

    model: a kit model name or a loaded model (default: qwen2.5-coder:1.5b
    when installed, else the starter model, which often ignores its sources).
    on_text(text_so_far) is called as the answer is written (a dashboard's view);
    on_status(line) with what is being done: searching, reading the prompt, writing.
    """
    from kit.engines import load

    say = on_status or (lambda line: None)
    say("Searching the documents...")
    hits = index.search(question, k=k, method=method)
    messages = build_messages(question, list(hits))
    if not hits:  # nothing to answer from: asking would only invite a guess
        return Answer(question, [], messages, "", NOT_FOUND,
                      getattr(model, "name", model or chat_model_name()), [],
                      hits.notices + ["Nothing matched, so no model was asked."])
    if model is None or isinstance(model, str):
        say(f"Loading {model or chat_model_name()}...")
        model = load(model or chat_model_name())
    fmt = getattr(model, "format_chat", None)
    prompt = fmt(messages) if fmt else "\n\n".join(m["content"] for m in messages)
    name = getattr(model, "name", str(model))
    if hasattr(model, "tokenize"):
        say(f"{name} is reading the prompt: {len(model.tokenize(prompt))} tokens "
            f"(the {len(hits)} sources and the question)...")
    stream = model.chat(messages, max_tokens=max_tokens, temperature=temperature,
                        **sampling)
    parts = []
    for piece in stream:
        parts.append(piece)
        if on_text:
            on_text("".join(parts))
        if len(parts) == 1 or len(parts) % 8 == 0:
            say(f"{name} is writing the answer: {len(parts)} tokens so far...")
    text = "".join(parts)
    claims = split_claims(text, list(hits))
    notices = list(hits.notices)
    if not looks_english(question) and not any("English" in n for n in notices):
        notices.append("The question does not look like English.")
    if text.strip() and not re.search(r"[^\W\d_]{2}", text):  # "1", "[2]": no words
        notices.append(f"The answer is only {text.strip()!r}, not a sentence: the model "
                       "did not answer. Ask again in other words, or use a bigger model.")
    notices += check_claims(claims, len(hits))
    if stream.stats.stop_reason == "length":
        notices.append(f"The answer was cut at max_tokens={max_tokens}.")
    return Answer(question, list(hits), messages, prompt, text,
                  getattr(model, "name", str(model)), claims, notices, stream.stats)
