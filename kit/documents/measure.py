"""How often the right chunk comes back: hit rate @k on questions with known answers (notebook 08).

>>> questions = load_questions()                  # the bundled library's 58
>>> print(hit_rate(index, questions, k=3))        # 'embeddings: 43 of 58 (74%) ...'

A question counts as a hit when one of the top k chunks comes from the file
(and page) that answers it and contains the phrase that holds the answer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kit.errors import BadParameter

DATA = Path(__file__).resolve().parents[1] / "data" / "documents"


def bundled_folder() -> Path:
    """The kit's library documents: 28 files, CC0 (see kit/data/documents/README.md)."""
    return DATA / "library"


@dataclass(frozen=True)
class Question:
    question: str
    file: str
    page: int | None  # None: anywhere in the file
    evidence: str  # a phrase of the file that holds the answer
    answer: str


def load_questions(path=None) -> list[Question]:
    """The questions of a JSON file like kit/data/documents/questions.json."""
    path = Path(path) if path else DATA / "questions.json"
    try:
        items = json.loads(path.read_text())["questions"]
        return [Question(**q) for q in items]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadParameter("questions", str(path), "a JSON file with a list "
                           "\"questions\" of {question, file, page, evidence, answer} "
                           f"({exc})") from exc


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def is_hit(question: Question, chunk) -> bool:
    return (chunk.file == question.file
            and question.page in (None, chunk.page)
            and _norm(question.evidence) in _norm(chunk.text))


@dataclass
class HitRate:
    method: str
    k: int
    ranks: list = field(default_factory=list)  # per question: rank of the first hit, or None
    questions: list = field(default_factory=list)

    @property
    def hits(self) -> int:
        return sum(r is not None for r in self.ranks)

    @property
    def rate(self) -> float:
        return self.hits / len(self.ranks) if self.ranks else 0.0

    def at(self, k: int) -> float:
        """The hit rate had only the top k counted (k at most the k searched)."""
        return sum(r is not None and r <= k for r in self.ranks) / max(len(self.ranks), 1)

    def misses(self) -> list[Question]:
        return [q for q, r in zip(self.questions, self.ranks) if r is None]

    def __str__(self) -> str:
        return (f"{self.method}: {self.hits} of {len(self.ranks)} questions "
                f"({self.rate:.0%}) have the answer in the top {self.k}")


def hit_rate(index, questions=None, k: int = 3, method: str = "embeddings") -> HitRate:
    """Search each question; where does the first chunk holding its answer come?"""
    questions = load_questions() if questions is None else list(questions)
    result = HitRate(method, k, questions=questions)
    for q in questions:
        hits = index.search(q.question, k=k, method=method)
        result.ranks.append(next((h.rank for h in hits if is_hit(q, h.chunk)), None))
    return result
