"""Fill in the middle: code completion between a prefix and a suffix.

Code models such as Qwen2.5-Coder learnt a special layout: the code before
the cursor, the code after it, then the missing middle, each marked with a
token of their own (<|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>). The kit
reads those tokens from the model's vocabulary (GGUF metadata), so it uses
whatever names a model gives them, and refuses a model that has none.
Editors (docs/editor.md) ask for this through /v1/completions with `suffix`.

>>> "".join(fill_in_middle(model, "def add(a, b):\\n    return ", "\\n"))
'a + b'
"""
from __future__ import annotations

from kit.errors import NoFillInMiddle

PARTS = ("pre", "suf", "mid")
NAMES = {"pre": "fill-in-the-middle prefix", "suf": "suffix", "mid": "middle"}


def fim_tokens(engine) -> dict[str, int]:
    """{"pre": id, "suf": id, "mid": id} from the model's vocabulary."""
    llm = getattr(engine, "llm", None)
    if llm is None or not hasattr(engine, "complete"):
        raise NoFillInMiddle(engine.name, f"the {engine.engine_name} engine cannot "
                             "take raw token ids")
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    ids = {p: getattr(llama_cpp, f"llama_vocab_fim_{p}")(vocab) for p in PARTS}
    missing = [NAMES[p] for p, i in ids.items() if i < 0]
    if missing:
        raise NoFillInMiddle(engine.name, f"its vocabulary has no {', '.join(missing)}"
                             " token")
    return ids


def split_fim_layout(engine, prompt: str):
    """(prefix, suffix) if `prompt` is already in the model's FIM layout, else None.

    Editors such as continue.dev write the layout themselves, with the token
    names as text: <|fim_prefix|>code before<|fim_suffix|>code after<|fim_middle|>.
    """
    try:
        ids = fim_tokens(engine)
    except NoFillInMiddle:
        return None
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(engine.llm.model)
    pre, suf, mid = (llama_cpp.llama_vocab_get_text(vocab, ids[p]).decode("utf-8")
                     for p in PARTS)
    if not (prompt.startswith(pre) and prompt.endswith(mid) and suf in prompt):
        return None
    prefix, _, suffix = prompt[len(pre):-len(mid)].partition(suf)
    return prefix, suffix


def fim_prompt(engine, prefix: str, suffix: str) -> list[int]:
    """The token ids: <prefix token> prefix <suffix token> suffix <middle token>."""
    ids = fim_tokens(engine)

    def text(s: str) -> list[int]:  # user code: special-looking text stays text
        return engine.llm.tokenize(s.encode("utf-8"), add_bos=False, special=False) \
            if s else []

    return [ids["pre"], *text(prefix), ids["suf"], *text(suffix), ids["mid"]]


def fill_in_middle(engine, prefix: str, suffix: str, sampling=None, **options):
    """A Stream of the code that belongs between `prefix` and `suffix`."""
    return engine.complete(fim_prompt(engine, prefix, suffix), sampling, **options)
