"""A byte-level BPE tokenizer (GPT-2 style) in plain Python.

The ctransformers engine needs it: the llama.cpp inside ctransformers (2023)
cannot tokenize GPT-2 style vocabularies such as SmolLM2's, so the kit turns
text into token ids itself, from the vocabulary and merges in the model file,
exactly as current llama.cpp does (the tests compare the two).

>>> tok = BPETokenizer.from_metadata(scan("model.gguf").metadata)
>>> tok.encode("Hello world")
[19556, 905]
"""
from __future__ import annotations

import unicodedata

from kit.errors import KitError

CONTROL, USER_DEFINED = 3, 4  # token types in GGUF files
CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")
# Extra metadata key written by kit.engines.ct_convert: the vocabulary as GPT-2's
# byte-to-letter strings, because the converted file stores raw bytes.
BYTE_LEVEL_KEY = "kit.tokenizer.byte_level_tokens"


def byte_to_letter() -> dict[int, str]:
    """GPT-2's printable stand-in for every byte: 32 (space) -> 'Ġ'."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    extra = [b for b in range(256) if b not in keep]
    letters = {b: chr(b) for b in keep}
    letters.update({b: chr(256 + i) for i, b in enumerate(extra)})
    return letters


def _kind(ch: str) -> str:
    if ch.isspace():
        return "s"
    cat = unicodedata.category(ch)[0]
    return cat if cat in "LN" else "p"  # letter, number, or anything else


def pre_split(text: str) -> list[str]:
    """Split like SmolLM2's pre-tokenizer: digits alone, then GPT-2's rule.

    GPT-2's rule: 's|'t|'re|'ve|'m|'ll|'d| ?L+| ?N+| ?[^sLN]+|s+(?!S)|s+
    >>> pre_split("It's 42 cats!")
    ["It", "'s", " ", "4", "2", " cats", "!"]
    """
    pieces, run = [], []
    for ch in text:  # first rule: every number character on its own
        if _kind(ch) == "N":
            if run:
                pieces.append("".join(run))
                run = []
            pieces.append(ch)
        else:
            run.append(ch)
    if run:
        pieces.append("".join(run))
    return [w for p in pieces for w in ([p] if _kind(p[0]) == "N" else _gpt2(p))]


def _gpt2(s: str) -> list[str]:
    out, i, n = [], 0, len(s)
    while i < n:
        ch = s[i]
        if ch == "'":
            hit = next((c for c in CONTRACTIONS if s.startswith(c, i + 1)), None)
            if hit:
                out.append(s[i:i + 1 + len(hit)])
                i += 1 + len(hit)
                continue
        j = i + 1 if ch == " " and i + 1 < n else i  # the optional space
        kind = _kind(s[j])
        if kind != "s" and (j == i or kind in "LNp"):
            k = j + 1
            while k < n and _kind(s[k]) == kind:
                k += 1
            out.append(s[i:k])
            i = k
            continue
        k = i  # whitespace: keep the last one for the word that follows
        while k < n and _kind(s[k]) == "s":
            k += 1
        if k < n and k - i > 1:
            k -= 1
        out.append(s[i:k])
        i = k
    return out


class BPETokenizer:
    """Token ids for text and text for token ids, from a GGUF vocabulary."""

    def __init__(self, tokens: list[str], merges: list[str], types: list[int]):
        letters = byte_to_letter()
        self._byte_of = {v: k for k, v in letters.items()}
        self._letter = [letters[b] for b in range(256)]
        self.tokens = tokens
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.ranks = {}
        for rank, m in enumerate(merges):
            a, _, b = m.partition(" ")
            self.ranks[(a, b)] = rank
        self.special = sorted((t for t, k in zip(tokens, types)
                               if k in (CONTROL, USER_DEFINED) and t),
                              key=len, reverse=True)
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_metadata(cls, md: dict) -> "BPETokenizer":
        tokens = md.get(BYTE_LEVEL_KEY) or md.get("tokenizer.ggml.tokens")
        merges = md.get("tokenizer.ggml.merges")
        if not tokens or not merges:
            raise KitError("This model file has no GPT-2 style vocabulary and "
                           "merges, so the kit cannot tokenize for it. Use the "
                           "llama.cpp engine (engine='llamacpp').")
        types = md.get("tokenizer.ggml.token_type") or [1] * len(tokens)
        return cls(tokens, merges, types)

    def _bpe(self, word: str) -> list[int]:
        if word in self._cache:
            return self._cache[word]
        parts = [self._letter[b] for b in word.encode("utf-8")]
        while len(parts) > 1:
            ranked = [(self.ranks.get(pair, 1 << 60), i)
                      for i, pair in enumerate(zip(parts, parts[1:]))]
            rank, i = min(ranked)
            if rank == 1 << 60:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids = []
        for p in parts:
            if p in self.ids:
                ids.append(self.ids[p])
            else:  # not in the vocabulary: fall back to single bytes
                ids.extend(self.ids[c] for c in p if c in self.ids)
        if len(self._cache) < 50_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str, special: bool = True) -> list[int]:
        """Token ids; with special=True, '<|im_end|>' in text is one token."""
        out = []
        for chunk, is_special in self._split_special(text, special):
            if is_special:
                out.append(self.ids[chunk])
            else:
                for word in pre_split(chunk):
                    out.extend(self._bpe(word))
        return out

    def _split_special(self, text: str, special: bool):
        if not special or not self.special:
            return [(text, False)] if text else []
        out, start, i = [], 0, 0
        while i < len(text):
            hit = next((s for s in self.special if text.startswith(s, i)), None)
            if hit:
                if i > start:
                    out.append((text[start:i], False))
                out.append((hit, True))
                i = start = i + len(hit)
            else:
                i += 1
        if start < len(text):
            out.append((text[start:], False))
        return out

    def token_bytes(self, token: int) -> bytes:
        """The bytes one token stands for (special tokens: b'')."""
        text = self.tokens[token]
        if text in self.special:
            return b""
        try:
            return bytes(self._byte_of[c] for c in text)
        except KeyError:  # not byte-level text: plain UTF-8
            return text.encode("utf-8")

    def decode(self, ids) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", "replace")
