"""Step through an answer one token at a time (notebooks 01 and 06).

The plain state behind kit.widgets.TokenExplorer: at each step the model's
candidates, what the sampler settings make of them, and the tokens chosen
so far (by you, or drawn by the model), with undo.

>>> ex = Explorer(model, "What is the capital of France?")
>>> [(r.text, round(r.model_p, 2), round(r.final_p, 2)) for r in ex.rows()[:2]]
[(' The', 0.4, 0.55), ('Paris', 0.2, 0.27)]
>>> ex.choose(ex.rows()[1].id); ex.draw(); ex.text; ex.undo()
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, replace

import numpy as np

from kit.engines.base import Sampling
from kit.probs import (TokenProb, candidates, check_k, colour, join_pieces,
                       no_probabilities, readable, reshape)

SETTINGS = ("temperature", "top_k", "top_p", "min_p")


@dataclass(frozen=True)
class Row:
    """One candidate as the explorer shows it."""

    id: int
    text: str
    model_p: float  # the model's own probability
    final_p: float  # the chance of being drawn with the settings (0 = removed)
    removed_by: str = ""  # "top_k", "top_p", "min_p", "temperature 0" or ""


class Explorer:
    """The model's next-token choices for a prompt, step by step."""

    def __init__(self, model, prompt: str, chat: bool = True, k: int = 10,
                 seed: int | None = None, **settings):
        if not hasattr(model, "logits"):  # ctransformers, a remote server
            raise no_probabilities(model.engine_name)
        self.model, self.k = model, k
        self.settings = Sampling()  # llama.cpp's defaults, validated on each change
        self.set(**settings)
        self.rng = np.random.default_rng(seed)
        self.start(prompt, chat)
        check_k(k, len(self.logits()))

    # -- the prompt and the steps ----------------------------------------
    def start(self, prompt: str, chat: bool = True) -> None:
        """Begin again from a prompt (in the chat template, or as plain text)."""
        self.prompt, self.chat = prompt, chat
        msgs = [{"role": "user", "content": prompt}]
        self.prompt_tokens = self.model.chat_tokens(msgs) if chat else \
            self.model.tokenize(prompt)
        self.steps: list[TokenProb] = []
        self.drawn: int | None = None  # the id the model drew last, if it chose
        self._logits = None

    def tokens(self) -> list[int]:
        return self.prompt_tokens + [s.id for s in self.steps]

    def logits(self) -> np.ndarray:
        if self._logits is None:
            self._logits = self.model.logits(self.tokens())
        return self._logits

    def set(self, **settings) -> None:
        """Change temperature, top_k, top_p or min_p (checked like Sampling's)."""
        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise TypeError(f"Unknown setting(s) {sorted(unknown)}; use {SETTINGS}.")
        self.settings = replace(self.settings, **settings)

    def shaped(self):
        s = self.settings
        return reshape(self.logits(), temperature=s.temperature, top_k=s.top_k,
                       top_p=s.top_p, min_p=s.min_p)

    def rows(self) -> list[Row]:
        """The k likeliest candidates, with what the sampler does to each."""
        shaped = self.shaped()
        out = []
        for i in range(min(self.k, len(shaped.order))):
            tid = int(shaped.order[i])
            text = candidates_text(self.model, tid)
            out.append(Row(tid, text, float(shaped.model_p[i]), float(shaped.final_p[i]),
                           shaped.removed_by.get(tid, "")))
        return out

    def kept(self) -> int:
        """How many tokens the sampler could draw from now."""
        return self.shaped().kept

    # -- moving on ---------------------------------------------------------
    def choose(self, token: int) -> TokenProb:
        """Append a token (picked by hand) and step on."""
        top = candidates(self.logits(), 5, self.model.token_bytes)
        logp = float(self.logits()[token]) - _logsumexp(self.logits())
        raw = self.model.token_bytes(token)
        step = TokenProb(candidates_text(self.model, token), token, math.exp(logp),
                         logp, raw, top)
        self.steps.append(step)
        self._logits = None
        self.drawn = None
        return step

    def draw(self) -> TokenProb:
        """Let the model choose with the current settings; `drawn` says which."""
        token = self.shaped().draw(self.rng)
        step = self.choose(token)
        self.drawn = token
        return step

    def undo(self) -> None:
        if self.steps:
            self.steps.pop()
            self._logits = None
            self.drawn = None

    def ended(self) -> bool:
        """Whether an end-of-answer token has been written (the model would
        stop there; the explorer lets you go on and see what follows)."""
        return any(self.model.is_end_token(s.id) for s in self.steps)

    # -- what it has written -----------------------------------------------
    @property
    def text(self) -> str:
        """The answer so far (split characters joined)."""
        return "".join(t for t, _ in join_pieces([s.bytes for s in self.steps]))

    def text_html(self) -> str:
        """The answer so far, each token coloured by how likely it was."""
        spans = []
        for text, owners in join_pieces([s.bytes for s in self.steps]):
            p = min(self.steps[i].prob for i in owners)
            spans.append(f'<span class="kit-tok" title="{p:.1%}" style="background:'
                         f'{colour(p)}">{html.escape(text)}</span>')
        return "".join(spans) or '<i style="color:#777">(nothing yet)</i>'


def candidates_text(model, token: int) -> str:
    return readable(model.token_bytes(token))


def _logsumexp(x) -> float:
    peak = float(np.max(x))
    return peak + math.log(float(np.exp(np.asarray(x, dtype=np.float64) - peak).sum()))
