"""Hold a model's answer against the catalogue rows it was shown (notebook 09).

A model can read "Emma — ... — on loan until 2026-12-22" and still write
"Emma is available". check_answer finds each title of the search results in
the answer, reads the status said beside it (available, on loan, a due date)
and compares. It is plain text matching, not understanding: a status it
cannot place counts as "not said", never as wrong.

>>> rows = "Emma — Jane Austen (1815, id 4) — on loan until 2026-12-22"
>>> check = check_answer("Emma is available.", rows)
>>> print(check)
✗ Emma: the answer says available; the catalogue says on loan until 2026-12-22
Contradicted by the catalogue: 1 of 1 titles named
>>> check.marked()
'Emma [✗ catalogue: on loan until 2026-12-22] is available.'
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from kit.tools.library import read_books

# Phrases that say a status. At one place the longest wins, so "not available"
# is read before "available", and "can be borrowed" before "borrowed".
ON_LOAN = ["on loan", "checked out", "borrowed", "lent out", "due back", "due",
           "not available", "not currently available", "unavailable"]
AVAILABLE = ["available", "on the shelf", "in stock", "can be borrowed",
             "not on loan", "not currently on loan", "not checked out"]
STATUS = re.compile(r"\b(" + "|".join(sorted(map(re.escape, ON_LOAN + AVAILABLE),
                                             key=len, reverse=True)) + r")\b", re.I)
# Where one statement ends and the next begins within a line: a sentence,
# ";", and the words that start another statement.
CLAUSE = re.compile(r"(?<=[.!?])\s+(?=[A-Z*])|;|,? but |, and |,? while |"
                    r",? whereas |,? however,? ", re.I)
MONTHS = ["january", "february", "march", "april", "may", "june", "july",
          "august", "september", "october", "november", "december"]
MONTH = r"(?P<month>" + "|".join(m[:3] for m in MONTHS) + r")[a-z]*\.?"
DATE = re.compile(r"\b(?P<iso>\d{4}-\d\d-\d\d)\b|\b" + MONTH + r" (?P<day>\d{1,2})"
                  r"(?:st|nd|rd|th)?\b|\b(?P<day2>\d{1,2})(?:st|nd|rd|th)? (?:of )?"
                  + MONTH.replace("month", "month2"), re.I)
HEADING = re.compile(r"^[\s#*_]*([^:\n]*):[\s*_]*$")  # "**On loan:**"
LIST_ITEM = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s")
LIST_TAIL = re.compile(r"^[\s\"'“”*_,.]*(?:(?:and|or)[\s\"'“”*_,.]*)?$", re.I)


@dataclass
class Claim:
    """One title in the answer: what the answer says, what the catalogue says."""

    title: str
    said: str  # "available", "on loan", or "" when the answer says no status
    truth: str  # "available" or "on loan until 2026-12-22"
    ok: bool | None  # None: nothing to check (no status said)
    start: int = 0  # where the title is in the answer
    end: int = 0

    def line(self) -> str:
        if self.ok is None:
            return f"· {self.title}: named, no status said (catalogue: {self.truth})"
        mark = "✓" if self.ok else "✗"
        return f"{mark} {self.title}: the answer says {self.said}; the catalogue " \
               f"says {self.truth}"


@dataclass
class Check:
    """What an answer claims about the books, each claim held against the rows."""

    answer: str
    claims: list[Claim] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # titles found, not named

    def wrong(self) -> list[Claim]:
        return [c for c in self.claims if c.ok is False]

    @property
    def ok(self) -> bool:
        """No claim in the answer is contradicted by the catalogue."""
        return not self.wrong()

    def marked(self) -> str:
        """The answer with [✗ catalogue: ...] after each contradicted title."""
        text = self.answer
        for c in sorted(self.wrong(), key=lambda c: c.end, reverse=True):
            text = f"{text[:c.end]} [✗ catalogue: {c.truth}]{text[c.end:]}"
        return text

    def __str__(self) -> str:
        lines = [c.line() for c in self.claims]
        lines += [f"· {t}: in the results, not in the answer" for t in self.missing]
        wrong = len(self.wrong())
        lines.append(f"Contradicted by the catalogue: {wrong} of {len(self.claims)}"
                     " titles named" if self.claims else
                     "The answer names none of the books found.")
        return "\n".join(lines)


def _status(phrase: str) -> str:
    return "on loan" if phrase.lower() in ON_LOAN else "available"


def _date(m: re.Match) -> str:
    """A date the answer wrote, as MM-DD (the year is not compared)."""
    if m["iso"]:
        return m["iso"][5:]
    month = (m["month"] or m["month2"])[:3].lower()
    day = int(m["day"] or m["day2"])
    return f"{[x[:3] for x in MONTHS].index(month) + 1:02d}-{day:02d}"


def _titles(clause: str, books: dict) -> list[tuple[int, int, str]]:
    """(start, end, title) of each catalogue title in a clause, longest first."""
    found, taken = [], set()
    for title in sorted(books, key=len, reverse=True):
        short = re.sub(r"^(the|a|an) ", "", title, flags=re.I)  # "Pickwick Papers"
        pattern = r"\b(?:" + "|".join(map(re.escape, {title, short})) + r")\b"
        for m in re.finditer(pattern, clause, re.I):
            if not taken & set(range(m.start(), m.end())):
                found.append((m.start(), m.end(), title))
                taken |= set(range(m.start(), m.end()))
    return sorted(found)


def _said(start: int, end: int, statuses: list[re.Match]) -> re.Match | None:
    """The status phrase for a title: the first after it, else the last before."""
    after = [s for s in statuses if s.start() >= end]
    before = [s for s in statuses if s.end() <= start]
    return after[0] if after else (before[-1] if before else None)


def _due_dates(titles: list, dates: list, end: int) -> list:
    """The date written for each title: the first one before the next title;
    when the dates follow all of several titles, in order if there are as
    many ("... respectively"), else none (which date is whose is unclear)."""
    if len(titles) > 1 and dates and dates[0].start() >= titles[-1][1]:
        return dates if len(dates) == len(titles) else [None] * len(titles)
    return [next((d for d in dates if b <= d.start() < upto), None)
            for (_, b, _), upto in zip(titles, [t[0] for t in titles[1:]] + [end])]


def _clauses(answer: str):
    """(start, text, in a list item, first in its line) for each statement."""
    offset = 0
    for line in answer.splitlines(keepends=True):
        item = LIST_ITEM.match(line)
        body = item.end() if item else 0
        parts = CLAUSE.split(line[body:])
        at = offset + body
        for i, part in enumerate(parts):
            at = answer.find(part, at)
            yield at, part, bool(item), i == 0
            at += len(part)
        offset += len(line)


def _results(results) -> str:
    """Tool results as text: a Run's tool messages, a list, or a string."""
    if hasattr(results, "messages"):
        return "\n".join(str(m.get("content", "")) for m in results.messages
                         if m.get("role") == "tool")
    if isinstance(results, (list, tuple)):
        return "\n".join(map(str, results))
    return str(results)


def check_answer(answer, results=None) -> Check:
    """Mark what `answer` says about each book that the `results` contradict.

    answer: the model's words, or a finished run (kit.tools.run_tools), whose
    tool results are then used when `results` is not given.
    results: the text the tool returned (or a list of such texts).
    """
    if hasattr(answer, "messages"):
        results = answer if results is None else results
        answer = answer.answer or ""
    books = {b["title"]: b for b in read_books(_results(results))}
    check, heading, last = Check(answer), "", ""
    for start, clause, item, first in _clauses(answer):
        statuses = list(STATUS.finditer(clause))
        titles = _titles(clause, books)
        rest = clause
        for a, b, _ in reversed(titles):
            rest = rest[:a] + rest[b:]
        # '..., and "Lady Susan".' after a clause with a status: the list goes on
        tail = not first and titles and not statuses and LIST_TAIL.match(rest)
        if HEADING.match(clause) and statuses and not titles:  # "**On loan:**"
            heading = _status(statuses[-1].group(0))
            continue
        if clause.strip() and not item:
            heading = ""  # prose after a list: its heading no longer applies
        dues = _due_dates(titles, list(DATE.finditer(clause)), len(clause))
        for (a, b, title), due in zip(titles, dues):
            book, phrase = books[title], _said(a, b, statuses)
            said = _status(phrase.group(0)) if phrase else last if tail else heading
            last = said
            truth = "on loan until " + book["due"] if book["status"] == "on loan" \
                else "available"
            ok = said == book["status"] if said else None
            if ok and said == "on loan" and due and _date(due) != book["due"][5:]:
                ok, said = False, f"on loan until {due.group(0)}"
            check.claims.append(Claim(title, said, truth, ok, start + a, start + b))
    named = {c.title for c in check.claims}
    check.missing = [t for t in books if t not in named]
    return check
