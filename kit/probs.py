"""Next-token probabilities, and how the sampler reshapes them (notebook 01).

At every step a model scores every token of its vocabulary; softmax turns the
scores (logits) into probabilities. The sampler then removes tokens (top_k,
top_p, min_p), sharpens or flattens what is left (temperature) and draws one.
`reshape` does that arithmetic exactly as llama.cpp's sampler chain does, so
the kit can show which tokens a setting keeps and how likely each one becomes.

>>> model.next_tokens("The capital of France is", k=3)
[Candidate(' Paris', p=0.62), Candidate(' the', p=0.08), ...]
>>> shaped = reshape(model.logits("The capital of France is"), temperature=0.8)
>>> shaped.kept, shaped.top(3)
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import numpy as np

from kit.errors import BadTopCount, NoProbabilities


# -- token text ----------------------------------------------------------------
def readable(piece: bytes) -> str:
    """A token's bytes as text; bytes that are only part of a character show
    as <0xE2> (the model writes a character such as 'é' or '🙂' in pieces).

    >>> readable(b"caf\\xc3"), readable("é".encode())
    ('caf<0xC3>', 'é')
    """
    out, rest = [], piece
    while rest:
        try:
            out.append(rest.decode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            out.append(rest[: exc.start].decode("utf-8"))
            out.extend(f"<0x{b:02X}>" for b in rest[exc.start: exc.end])
            rest = rest[exc.end:]
    return "".join(out)


def join_pieces(pieces: list[bytes]) -> list[tuple[str, list[int]]]:
    """Group token pieces so that split characters join again.

    Returns (text, indices of the tokens that wrote it) per group: a token
    holding half of 'é' joins the next one; a piece that never completes
    stays readable as <0x..> bytes.
    """
    groups, held, owners = [], b"", []

    def flush():
        if owners:
            groups.append((readable(held), list(owners)))

    for i, piece in enumerate(pieces):
        for attempt in (0, 1):
            try:
                groups.append(((held + piece).decode("utf-8"), owners + [i]))
                held, owners = b"", []
                break
            except UnicodeDecodeError as exc:
                incomplete = exc.reason == "unexpected end of data"
                if incomplete and len(owners) < 4:  # a character is 4 bytes at most
                    held, owners = held + piece, owners + [i]
                    break
                if attempt or not owners:  # this piece alone is broken too
                    groups.append((readable(held + piece), owners + [i]))
                    held, owners = b"", []
                    break
                flush()  # what was held never completes: show it, then retry
                held, owners = b"", []
    flush()
    return groups


# -- probabilities -------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One possible next token: its text, id, probability and log-probability."""

    text: str
    id: int
    prob: float
    logprob: float
    bytes: bytes = b""

    def __repr__(self) -> str:
        return f"Candidate({self.text!r}, p={self.prob:.3g})"


@dataclass(frozen=True)
class TokenProb:
    """A generated token: how likely it was, and the alternatives at that step."""

    text: str
    id: int
    prob: float
    logprob: float
    bytes: bytes = b""
    top: list[Candidate] = field(default_factory=list)


def log_softmax(logits) -> np.ndarray:
    """Log-probabilities from raw scores (float64, numerically safe)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max()
    return x - math.log(np.exp(x).sum())


def check_k(k, n_vocab: int) -> int:
    """k as a count of candidates, or BadTopCount naming what is allowed."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_vocab:
        raise BadTopCount(k=k, n_vocab=n_vocab)
    return k


def top_ids(values: np.ndarray, k: int) -> np.ndarray:
    """The ids of the k largest values, largest first."""
    k = min(k, len(values))
    part = np.argpartition(-values, k - 1)[:k] if k < len(values) else np.arange(len(values))
    return part[np.argsort(-values[part], kind="stable")]


def candidates(logits, k: int, piece) -> list[Candidate]:
    """The k likeliest tokens; piece(id) gives a token's bytes."""
    logp = log_softmax(logits)
    out = []
    for i in top_ids(logp, check_k(k, len(logp))):
        raw = piece(int(i))
        out.append(Candidate(readable(raw), int(i), float(math.exp(logp[i])),
                             float(logp[i]), raw))
    return out


class Prober:
    """Turns the logits of each generated token into a TokenProb (top k too).

    Only the log-sum-exp and a partial sort over the vocabulary: cheap enough
    to run at every token of a stream.
    """

    def __init__(self, top: int, n_vocab: int, piece):
        self.top = 0 if not top else check_k(top, n_vocab)
        self.piece = piece

    def __call__(self, logits: np.ndarray, token: int) -> TokenProb:
        x = logits.astype(np.float32, copy=False)
        peak = float(x.max())
        lse = peak + math.log(float(np.exp(x - peak, dtype=np.float32).sum()))
        top = []
        for i in (top_ids(x, self.top) if self.top else ()):
            raw = self.piece(int(i))
            lp = float(x[i]) - lse
            top.append(Candidate(readable(raw), int(i), math.exp(lp), lp, raw))
        raw, lp = self.piece(token), float(x[token]) - lse
        return TokenProb(readable(raw), token, math.exp(lp), lp, raw, top)


# -- the sampler chain ---------------------------------------------------------
@dataclass
class Reshaped:
    """A distribution after the sampler: `order` (ids, likeliest first by the
    model), `model_p` (the model's own probability of each), `final_p` (the
    chance of being drawn with these settings; 0 = removed) and `kept`."""

    order: np.ndarray
    model_p: np.ndarray
    final_p: np.ndarray
    kept: int
    removed_by: dict = field(default_factory=dict)  # id -> "top_k"/"top_p"/...

    def top(self, n: int = 10) -> list[tuple[int, float, float]]:
        """(id, model probability, probability after the sampler) for n tokens."""
        return [(int(self.order[i]), float(self.model_p[i]), float(self.final_p[i]))
                for i in range(min(n, len(self.order)))]

    def draw(self, rng: np.random.Generator | None = None) -> int:
        """Draw one token id as the sampler would."""
        rng = rng or np.random.default_rng()
        return int(self.order[rng.choice(self.kept, p=self.final_p[: self.kept]
                                         / self.final_p[: self.kept].sum())])


def penalize(logits: np.ndarray, recent, penalty: float) -> np.ndarray:
    """llama.cpp's repeat penalty: each token seen lately is made less likely
    (a positive score divided by the penalty, a negative one multiplied)."""
    x = np.array(logits, dtype=np.float64)
    if penalty != 1.0:
        for t in set(int(t) for t in recent):
            x[t] = x[t] / penalty if x[t] > 0 else x[t] * penalty
    return x


def reshape(logits, temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95,
            min_p: float = 0.05, repeat_penalty: float = 1.0, recent=()) -> Reshaped:
    """The distribution llama.cpp draws from with these settings.

    Its chain, in order: repeat penalty, top_k (keep the k best; 0 = off),
    top_p (keep the best until their probabilities add up to top_p), min_p
    (drop tokens below min_p times the best one's probability), temperature
    (divide the scores: below 1 sharpens, above 1 flattens), then draw.
    Temperature 0 always takes the best token. top_p and min_p look at the
    probabilities before temperature, so temperature never changes which
    tokens are kept, only how likely each is.
    """
    x = penalize(logits, recent, repeat_penalty)
    order = np.argsort(-x, kind="stable")
    xs = x[order]
    model_p = np.exp(log_softmax(np.asarray(logits, dtype=np.float64)))[order]
    removed = {}
    if temperature <= 0:
        n = 1
        reason = "temperature 0"
    else:
        n, reason = len(xs), None
        if top_k > 0 and top_k < n:
            n = top_k
            removed.update(dict.fromkeys(order[n: n + 64].tolist(), "top_k"))
        if top_p < 1.0:
            p = np.exp(xs[:n] - xs[0])
            cum = np.cumsum(p / p.sum())
            reach = int(np.argmax(cum >= top_p)) + 1 if cum[-1] >= top_p else n
            removed.update(dict.fromkeys(order[reach:n][:64].tolist(), "top_p"))
            n = max(1, reach)
        if min_p > 0.0:
            keep = int(np.sum(xs[:n] >= xs[0] + math.log(min_p)))
            removed.update(dict.fromkeys(order[keep:n][:64].tolist(), "min_p"))
            n = max(1, keep)
    if reason:
        removed.update(dict.fromkeys(order[1:64].tolist(), reason))
    final = np.zeros(len(xs))
    if temperature <= 0:
        final[0] = 1.0
    else:
        z = (xs[:n] - xs[0]) / temperature
        final[:n] = np.exp(z) / np.exp(z).sum()
    return Reshaped(order, model_p, final, n, removed)


# -- colouring text by probability ---------------------------------------------
def colour(prob: float) -> str:
    """A background colour: green for likely tokens, through yellow, to red."""
    hue = 120 * max(0.0, min(1.0, prob)) ** 0.5
    return f"hsl({hue:.0f}, 75%, 80%)"


def to_html(tokens: list[TokenProb], title: str = "") -> str:
    """Text with each token on a background coloured by its probability
    (hover for the figure); split characters are joined first."""
    spans = []
    for text, owners in join_pieces([t.bytes or t.text.encode() for t in tokens]):
        p = min(tokens[i].prob for i in owners)
        label = ", ".join(f"{tokens[i].text!r}: {tokens[i].prob:.1%}" for i in owners)
        spans.append(f'<span title="{html.escape(label)}" style="background:'
                     f'{colour(p)};white-space:pre-wrap">{html.escape(text)}</span>')
    head = f"<b>{html.escape(title)}</b><br>" if title else ""
    return f'<div style="line-height:1.8;font-family:monospace">{head}{"".join(spans)}</div>'


def no_probabilities(engine_name: str) -> NoProbabilities:
    """The error for an engine that cannot report probabilities."""
    return NoProbabilities(engine=engine_name)
