"""Show why a chunk was found: the sentence that matches, the question's words marked (notebook 08).

>>> hits = index.search("Can I bring my dog into the library?")
>>> print(show(hits, "Can I bring my dog into the library?", index))
1. 0.602  code-of-conduct.txt, line 27
   ...7. [Bring] animals only if they are service animals, or for a [library] event...

A chunk holds 120 words; printing its first 200 characters often misses the
part that matched. Here each chunk is cut into sentences and the window is
centred on the best one: by meaning (the sentence whose embedding is closest
to the question's) when an index is given and the hits came from embeddings,
else by the question's words it contains. The question's words are marked
[like this] (for BM25 every word, "my" and "can" too: it counts them all);
a search by meaning may match none ("dog" and "service animal" share no
word), which is the point of searching by meaning.
"""
from __future__ import annotations

import re

from kit.documents.bm25 import words

WIDTH = 220  # characters of a snippet
_SKIP = set("""the a an and or of to in on at for is are be it this that with as by from
can you your we our i my do does how what when where which who why""".split())


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line of a text."""
    spans, start = [], 0
    for m in re.finditer(r"(?<=[.!?])\s+|\n+", text):
        if text[start:m.start()].strip():
            spans.append((start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def key_words(question: str, all_words: bool = False) -> set[str]:
    """The question's words worth marking (all of them: what BM25 counts)."""
    return {w for w in words(question) if all_words or (w not in _SKIP and len(w) > 1)}


def best_sentence(text: str, question: str, embedder=None,
                  all_words: bool = False) -> tuple[int, int]:
    """The span of the sentence that matches the question best."""
    spans = sentence_spans(text) or [(0, len(text))]
    if embedder is not None and len(spans) > 1:
        vectors = embedder.embed([question] + [text[a:b] for a, b in spans],
                                 progress=False)
        scores = vectors[1:] @ vectors[0]
        return spans[int(scores.argmax())]
    wanted = key_words(question, all_words)
    return max(spans, key=lambda s: len(wanted & set(words(text[s[0]:s[1]]))))


def mark(text: str, question: str, all_words: bool = False) -> str:
    """The text with each of the question's words in [brackets]."""
    wanted = key_words(question, all_words)
    if not wanted:
        return text
    pattern = r"\b(" + "|".join(re.escape(w) for w in sorted(wanted, key=len, reverse=True)
                               ) + (r")\b" if all_words else r")\w*")
    return re.sub(pattern, lambda m: f"[{m.group(0)}]", text, flags=re.IGNORECASE)


def snippet(text: str, question: str, embedder=None, width: int = WIDTH,
            all_words: bool = False) -> str:
    """About `width` characters of text around its best sentence, words marked."""
    text = " ".join(text.split())
    a, b = best_sentence(text, question, embedder, all_words)
    if b - a >= width:
        a, b = a, a + width
    else:  # centre the sentence in the window
        pad = (width - (b - a)) // 2
        a, b = max(0, a - pad), min(len(text), b + pad)
    a = text.rfind(" ", 0, a) + 1 if a > 0 else 0  # whole words at both ends
    b = text.find(" ", b) if 0 <= text.find(" ", b) < len(text) else len(text)
    return (("..." if a > 0 else "") + mark(text[a:b].strip(), question, all_words)
            + ("..." if b < len(text) else ""))


def show(hits, question: str, index=None) -> str:
    """Each hit with its score, where it is, and the snippet that matched."""
    lines = []
    for h in hits:
        by_meaning = index is not None and h.method == "embeddings"
        text = snippet(h.chunk.text, question, index.embedder if by_meaning else None,
                       all_words=h.method == "bm25")  # BM25 counts every word
        lines += [f"{h.rank}. {h.score:.3f}  {h.chunk.where()}", f"   {text}"]
    lines = lines or ["(nothing found)"]
    return "\n".join(lines + [f"NOTE: {n}" for n in getattr(hits, "notices", [])])
