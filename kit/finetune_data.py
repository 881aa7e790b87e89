"""Training data for notebook 10: read a file, lay out pairs with the model's
chat template, turn it into tokens, cut the tokens into windows.

>>> kind, items = read_data(bundled("library-qa"))      # ('chat', [...])
>>> train, held_out = split_windows(list(range(1000)), 128)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError, NotTextData, TrainingDataTooShort

DATA_DIR = Path(__file__).parent / "data"
BUNDLED = {"library": "larkspur_library.txt", "library-qa": "larkspur_library_qa.jsonl",
           "general": "general_knowledge.json"}


def bundled(name: str = "library") -> Path:
    """A data file shipped with the kit: 'library', 'library-qa' or 'general'."""
    if name not in BUNDLED:
        raise KitError(f"No bundled data {name!r}. Choose one of: {', '.join(BUNDLED)}.")
    return DATA_DIR / BUNDLED[name]


def read_data(path) -> tuple[str, object]:
    """('text', str) or ('chat', [{'question':..., 'answer':...} or messages])."""
    path = Path(path).expanduser()
    raw = path.read_bytes() if path.is_file() else None
    if raw is None or b"\x00" in raw[:65536] or not raw.strip():
        raise NotTextData(path, "there is no such file" if raw is None else "it is "
                          "empty" if not raw.strip() else "it holds binary bytes "
                          "(a model, a PDF, an image?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotTextData(path, f"it is not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from exc
    if path.suffix.lower() not in (".json", ".jsonl"):
        return "text", text
    try:
        items = (json.loads(text) if path.suffix.lower() == ".json" else
                 [json.loads(line) for line in text.splitlines() if line.strip()])
    except json.JSONDecodeError as exc:
        raise NotTextData(path, f"it is not valid JSON ({exc})") from exc
    if not (isinstance(items, list) and items and all(isinstance(i, dict) and (
            {"question", "answer"} <= set(i) or "messages" in i) for i in items)):
        raise NotTextData(path, "each item needs \"question\" and \"answer\" "
                          "(or \"messages\")")
    return "chat", items


def chat_texts(llm, items, system: str | None = None) -> list[str]:
    """Each pair written out with the model's own chat template, answer included."""
    from llama_cpp import llama_vocab_get_text
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from kit.engines.llamacpp import FALLBACK_TEMPLATE, vocab_of
    vocab = vocab_of(llm)  # public: llama.cpp's own vocabulary calls
    text = lambda t: llama_vocab_get_text(vocab, t).decode() if t != -1 else ""  # noqa: E731
    fmt = Jinja2ChatFormatter(
        template=(llm.metadata or {}).get("tokenizer.chat_template") or FALLBACK_TEMPLATE,
        eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos()),
        add_generation_prompt=False)  # the answer follows: no empty turn after it
    out = []
    for item in items:
        msgs = item.get("messages") or [{"role": "user", "content": item["question"]},
                                        {"role": "assistant", "content": item["answer"]}]
        if system and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": system}, *msgs]
        out.append(fmt(messages=msgs).prompt)
    return out


@dataclass
class Prepared:
    """Training data as the model's tokens, plus what it was made from."""

    tokens: list
    kind: str  # "text" or "chat"
    n_examples: int
    source: str
    first_text: str = ""  # the first example as the model sees it


def prepare(model=None, data=None, system: str | None = None,
            max_tokens: int | None = None) -> Prepared:
    """Read a data file (or a list of question/answer dicts) into tokens."""
    from kit.engines import load

    if isinstance(data, list):
        kind, content, source = "chat", data, "pairs"
    elif isinstance(data, tuple):  # (kind, content) read before
        (kind, content), source = data, "data"
    else:
        kind, content = read_data(data if data is not None else bundled())
        source = str(data)
    llm = load(model, n_ctx=512, quiet=True, check_fit=False).llm  # the tokenizer
    if kind == "text":
        if max_tokens:  # a token is rarely over 16 characters: read no further
            content = content[:16 * max_tokens]
        texts, tokens = [content], llm.tokenize(content.encode(), add_bos=True)
    else:
        texts = chat_texts(llm, content, system)
        tokens = []
        for t in texts:  # specials parsed: <|im_start|> is one token, as in chat
            tokens += llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)
    return Prepared(tokens[:max_tokens], kind, len(texts), source, texts[0][:2000])


def split_windows(tokens, n_ctx: int, eval_share: float = 0.1):
    """(training windows, held-out windows), each window n_ctx + 1 tokens.

    The held-out tail is never trained on; training windows overlap by half.
    """
    w = n_ctx + 1
    n = len(tokens)
    if n < 2 * w:
        raise TrainingDataTooShort(n, 2 * w, n_ctx)
    n_eval = max(1, min(int(n * eval_share) // w, (n - w) // w))
    cut = n - n_eval * w
    evals = [tokens[cut + i * w: cut + (i + 1) * w] for i in range(n_eval)]
    stride = max(1, n_ctx // 2)
    starts = list(range(0, cut - w + 1, stride))
    if starts[-1] != cut - w:
        starts.append(cut - w)  # the last tokens before the tail are learnt too
    return [tokens[s: s + w] for s in starts], evals
