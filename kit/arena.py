"""The arena: one prompt, two or three contestants, a vote, a running tally.

A contestant is a model with its settings, so the same model at two
temperatures can compete. In blind mode the columns are shuffled and named
"Model A", "Model B"... until the learner votes.

>>> r = Round(default_contestants(["smollm2:135m"]), blind=True, seed=1)
>>> r.header(0)                  # 'Model A'
>>> r.vote(1, tally)             # reveals the names, counts the vote
>>> print(tally.table())
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from kit.errors import BadParameter

LETTERS = "ABC"
MAX_CONTESTANTS = len(LETTERS)


@dataclass(frozen=True)
class Contestant:
    """A model and the settings it answers with."""

    model: str
    temperature: float = 0.7
    seed: int | None = None

    @property
    def label(self) -> str:
        seed = f", seed {self.seed}" if self.seed is not None else ""
        return f"{self.model} (temperature {self.temperature:g}{seed})"

    def sampling(self, max_tokens: int) -> dict:
        return {"temperature": self.temperature, "seed": self.seed,
                "max_tokens": max_tokens}


def default_contestants(names: list[str], n: int = 2) -> list[Contestant]:
    """Up to n different models; with only one, the same model at 0.2 and 1.2."""
    if not names:
        raise BadParameter("models", names, "at least one installed model "
                           "(run `kit setup` for the starter model)")
    n = max(2, min(n, MAX_CONTESTANTS))
    if len(names) >= 2:
        return [Contestant(name) for name in names[:n]]
    temps = (0.2, 1.2, 2.0)[:n]
    return [Contestant(names[0], t, seed=1) for t in temps]


@dataclass
class Tally:
    """Votes per contestant label, plus ties, across rounds."""

    wins: dict[str, int] = field(default_factory=dict)
    ties: int = 0

    @property
    def rounds(self) -> int:
        return sum(self.wins.values()) + self.ties

    def record(self, winner: str | None, contestants: list[str]) -> None:
        """Count a round: winner's label, or None for a tie."""
        for label in contestants:
            self.wins.setdefault(label, 0)
        if winner is None:
            self.ties += 1
        elif winner not in contestants:
            raise BadParameter("winner", winner, f"one of {contestants} or None (a tie)")
        else:
            self.wins[winner] += 1

    def rows(self) -> list[tuple[str, int, float]]:
        """(label, wins, share of rounds), most wins first."""
        total = self.rounds or 1
        return sorted(((lab, w, w / total) for lab, w in self.wins.items()),
                      key=lambda r: (-r[1], r[0]))

    def table(self) -> str:
        lines = [f"{'contestant':<44} {'wins':>4} {'share':>6}"]
        lines += [f"{lab:<44} {w:>4} {s:>6.0%}" for lab, w, s in self.rows()]
        lines.append(f"{'ties':<44} {self.ties:>4}   ({self.rounds} rounds)")
        return "\n".join(lines)


class Round:
    """One prompt's columns; hides labels in blind mode until the vote."""

    def __init__(self, contestants: list[Contestant], blind: bool = False,
                 seed: int | None = None):
        if not 2 <= len(contestants) <= MAX_CONTESTANTS:
            raise BadParameter("contestants", len(contestants),
                               f"2 to {MAX_CONTESTANTS} contestants")
        if len({c.label for c in contestants}) != len(contestants):
            raise BadParameter("contestants", [c.label for c in contestants],
                               "all different (change a model, temperature or seed)")
        self.slots = list(contestants)
        if blind:  # shuffle so the column does not give the answer away
            random.Random(seed).shuffle(self.slots)
        self.blind, self.revealed, self.winner = blind, not blind, None
        self.voted = False

    def header(self, i: int) -> str:
        name = f"Model {LETTERS[i]}"
        return self.slots[i].label if self.revealed else name

    def vote(self, slot: int | None, tally: Tally) -> str:
        """Vote for a column (None = tie); reveals the names. Returns a sentence."""
        if self.voted:
            raise BadParameter("vote", slot, "one vote per round; ask a new prompt first")
        if slot is not None and not 0 <= slot < len(self.slots):
            raise BadParameter("vote", slot, f"0 to {len(self.slots) - 1} or None (a tie)")
        labels = [c.label for c in self.slots]
        self.winner = None if slot is None else labels[slot]
        tally.record(self.winner, labels)
        self.voted = self.revealed = True
        if slot is None:
            return "A tie. " + "; ".join(f"Model {LETTERS[i]} was {lab}"
                                         for i, lab in enumerate(labels))
        return f"You chose Model {LETTERS[slot]}: {labels[slot]}."
