"""How often the right chunk comes back (hit rate @k), and how often the answer is right (notebook 08).

>>> questions = load_questions()                  # the bundled library's 58
>>> print(hit_rate(index, questions, k=3))        # 'embeddings: 43 of 58 (74%) ...'

A question counts as a hit when one of the top k chunks comes from the file
(and page) that answers it and contains the phrase that holds the answer.

>>> print(answer_rate(index, kit.load("qwen2.5-coder:1.5b")))
qwen2.5-coder:1.5b: 40 of 58 answers (69%) contain the known fact; ...

An answer is right when it contains the known fact (answer_facts.json holds
a pattern per question: "7 days" or "seven days" or "a week"). That is a
generous check: it cannot tell a right fact in a wrong sentence.
"""
from __future__ import annotations

import json
import re
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


# ---- answer correctness: does the answer contain the known fact? -------------

def normalise_answer(text: str) -> str:
    """Lower case, one space, '9 a.m.' as '9am', '1:00 pm' as '1pm', straight quotes."""
    text = text.lower().replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"(\d)\s*([ap])\.?\s?m\b\.?", r"\1\2m", text)
    text = re.sub(r"(\d):00(?=[ap]m)", r"\1", text)
    return " ".join(text.split())


def load_facts(path=None) -> dict[str, str]:
    """Question -> a regular expression its answer must match (answer_facts.json)."""
    path = Path(path) if path else DATA / "answer_facts.json"
    return json.loads(path.read_text())["facts"]


def has_fact(text: str, pattern: str) -> bool:
    return re.search(pattern, normalise_answer(text)) is not None


@dataclass
class AnswerRate:
    model: str
    k: int
    rows: list = field(default_factory=list)  # per question: (Question, answer text, right, found)

    @property
    def right(self) -> int:
        return sum(r[2] for r in self.rows)

    @property
    def found(self) -> int:
        """Questions whose answer was in the chunks the model read."""
        return sum(r[3] for r in self.rows)

    @property
    def rate(self) -> float:
        return self.right / len(self.rows) if self.rows else 0.0

    def wrong(self) -> list:
        """(question, answer) for each answer without the known fact."""
        return [(q.question, text) for q, text, ok, _ in self.rows if not ok]

    def __str__(self) -> str:
        return (f"{self.model}: {self.right} of {len(self.rows)} answers ({self.rate:.0%}) "
                f"contain the known fact; the answer was in the top {self.k} chunks "
                f"for {self.found}")


def answer_rate(index, model, questions=None, k: int = 3, max_tokens: int = 80,
                progress=None) -> AnswerRate:
    """Ask each question; does the answer contain the fact it should?

    model: a loaded chat model (load it once: each question reuses it).
    progress(done, total, row) is called after each answer.
    """
    from kit.documents.ask import answer

    questions = load_questions() if questions is None else list(questions)
    facts = load_facts()
    result = AnswerRate(getattr(model, "name", str(model)), k)
    for n, q in enumerate(questions, 1):
        a = answer(q.question, index, model=model, k=k, max_tokens=max_tokens)
        pattern = facts.get(q.question) or re.escape(normalise_answer(q.answer))
        row = (q, a.text.strip(), has_fact(a.text, pattern),
               any(is_hit(q, h.chunk) for h in a.hits))
        result.rows.append(row)
        if progress:
            progress(n, len(questions), row)
    return result
