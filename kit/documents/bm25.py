"""Keyword search with BM25, the ranking most search boxes use (notebook 08).

>>> bm = BM25(["the cat sat", "the dog", "a cat and a cat"])
>>> bm.top("cat", k=2)                     # [(2, 0.578...), (0, 0.492...)]

For each query word w found in a chunk d:

    idf(w) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avg_len))

with tf how often w occurs in d, idf(w) = ln((N - n + 0.5) / (n + 0.5) + 1)
(N chunks, n of them containing w: rare words weigh more), k1 = 1.5 (the
tenth "cat" adds less than the second) and b = 0.75 (long chunks are
penalised). A chunk's score is the sum over the distinct query words.
"""
from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np


def words(text: str) -> list[str]:
    """Lower-case words and numbers: 'Opening hours, 9-5' -> ['opening', 'hours', '9', '5']."""
    return re.findall(r"\w+", text.lower())


class BM25:
    """A BM25 index over a list of texts (chunks)."""

    def __init__(self, texts, k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.counts = [Counter(words(t)) for t in texts]
        self.lengths = np.array([sum(c.values()) for c in self.counts], dtype=float)
        self.avg_len = float(self.lengths.mean()) if len(self.counts) else 0.0
        n = len(self.counts)
        df = Counter(w for c in self.counts for w in c)
        self.idf = {w: math.log((n - m + 0.5) / (m + 0.5) + 1) for w, m in df.items()}

    def scores(self, query: str) -> np.ndarray:
        """One score per text; 0 where no query word occurs."""
        out = np.zeros(len(self.counts))
        if not len(self.counts):
            return out
        norm = self.k1 * (1 - self.b + self.b * self.lengths / max(self.avg_len, 1e-9))
        for w in dict.fromkeys(words(query)):  # distinct words, in order
            if w not in self.idf:
                continue
            tf = np.array([c.get(w, 0) for c in self.counts], dtype=float)
            out += self.idf[w] * tf * (self.k1 + 1) / (tf + norm)
        return out

    def top(self, query: str, k: int = 3) -> list[tuple[int, float]]:
        """The k best (index, score) pairs with a score above 0, best first."""
        s = self.scores(query)
        order = np.argsort(-s, kind="stable")[:k]
        return [(int(i), float(s[i])) for i in order if s[i] > 0]
