"""Example tools for notebook 09: a calculator, dates, a library catalogue.

The catalogue holds 342 public-domain books (kit/data/library_catalogue.csv;
the loans are invented) and is loaded into SQLite when first searched.
A search answers in plain words: a count line that names the books on loan,
then one line per book with its status last (not JSON, whose quotes and
escapes a 1.5B model must read through):

>>> found = search_catalogue(author="Austen", title="Emma")
>>> print(found)
Found 1 book: 0 available, 1 on loan (Emma).
Emma — Jane Austen (1815, id 4) — on loan until 2026-12-22
>>> read_books(found)  # the lines read back (kit.tools.check uses this)
[{'title': 'Emma', 'author': 'Jane Austen', 'status': 'on loan', 'due': '2026-12-22'}]

TASKS is the notebook's task set: a question, the tool that should be called,
and a check of its arguments; score() counts the successes of a model.

>>> calculator("37 * 48")
1776
"""
from __future__ import annotations

import ast
import csv
import datetime as dt
import operator
import re
import sqlite3
import tempfile
import time
from pathlib import Path

CSV = Path(__file__).resolve().parents[1] / "data" / "library_catalogue.csv"
_DB: dict = {}
OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
       ast.Div: operator.truediv, ast.Pow: operator.pow, ast.Mod: operator.mod,
       ast.FloorDiv: operator.floordiv, ast.USub: operator.neg, ast.UAdd: operator.pos}


def calculator(expression: str) -> float:
    """Work out an arithmetic expression such as (120 + 80) / 4 or 2 ** 10.

    expression: numbers with + - * / ** % and brackets
    """
    def ev(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 100:
                raise ValueError("exponent too large")
            return OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in OPS:
            return OPS[type(node.op)](ev(node.operand))
        raise ValueError(f"only numbers and + - * / ** % are allowed, not "
                         f"{ast.unparse(node)!r}")

    value = ev(ast.parse(expression.replace("^", "**"), mode="eval").body)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def day_of_week(date: str) -> str:
    """The day of the week of a date.

    date: the date as YYYY-MM-DD, e.g. 2026-12-25
    """
    return dt.date.fromisoformat(date).strftime("%A")


def days_between(start: str, end: str) -> int:
    """How many days lie from one date to another.

    start: the first date, YYYY-MM-DD
    end: the second date, YYYY-MM-DD
    """
    return (dt.date.fromisoformat(end) - dt.date.fromisoformat(start)).days


def catalogue(path=None) -> Path:
    """The SQLite catalogue, built from the bundled CSV on first use."""
    if path is None:
        path = _DB.get("path") or Path(tempfile.mkdtemp(prefix="kit-library-")) / \
            "library_catalogue.sqlite"
    path = Path(path)
    if not path.exists():
        with open(CSV, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE books (id INTEGER PRIMARY KEY, author TEXT, "
                    "title TEXT, year INTEGER, shelf TEXT, status TEXT, due TEXT)")
        db.executemany("INSERT INTO books VALUES (:id, :author, :title, :year, :shelf,"
                       " :status, :due)", rows)
        db.commit()
        db.close()
    _DB["path"] = path
    return path


def book_line(title: str, author: str, year, book_id, status: str, due: str) -> str:
    """One book as the search shows it: title — author (year, id) — status."""
    said = f"on loan until {due}" if status == "on loan" else status
    year = f"{-int(year)} BC" if int(year) < 0 else year  # Homer: -750
    return f"{title} — {author} ({year}, id {book_id}) — {said}"


BOOK_LINE = re.compile(r"^(?P<title>.+?) — (?P<author>.+?) \(\d+(?: BC)?, id \d+\) — "
                       r"(?P<status>available|on loan)(?: until (?P<due>[\d-]+))?$")


def read_books(text: str) -> list[dict]:
    """The books in a search result: title, author, status and due date."""
    return [{"title": m["title"], "author": m["author"], "status": m["status"],
             "due": m["due"] or ""}
            for m in map(BOOK_LINE.match, str(text).splitlines()) if m]


def search_catalogue(author: str = "", title: str = "") -> str:
    """Find books in the library catalogue by author and/or title words.

    author: part of the author's name, e.g. Austen
    title: part of the title, e.g. Emma
    """
    where = ("FROM books WHERE author LIKE ? AND title LIKE ?",
             (f"%{author.strip()}%", f"%{title.strip()}%"))
    db = sqlite3.connect(catalogue())
    (found,) = db.execute("SELECT count(*) " + where[0], where[1]).fetchone()
    rows = db.execute("SELECT title, author, year, id, status, due " + where[0] +
                      " ORDER BY author, year LIMIT 20", where[1]).fetchall()
    db.close()
    if not rows:
        asked = " and ".join(f"{k} {v!r}" for k, v in
                             (("author", author), ("title", title)) if v.strip())
        return f"No books found for {asked or 'an empty search'}."
    # The count line names the books on loan: the answer to the commonest
    # question, so a small model need not gather it from the lines below.
    out = [r[0] for r in rows if r[4] == "on loan"]
    head = f"Found {found} book{'s' * (found != 1)}" + (
        f"; the first {len(rows)}" if found > len(rows) else "") + \
        f": {len(rows) - len(out)} available, {len(out)} on loan" + (
        f" ({', '.join(out)})." if out else ".")
    return "\n".join([head] + [book_line(*row) for row in rows])


def delete_book(book_id: int) -> str:
    """Remove a book from the catalogue for good (it cannot be undone).

    book_id: the book's id number in the catalogue
    """
    db = sqlite3.connect(catalogue())
    gone = db.execute("DELETE FROM books WHERE id = ?", (book_id,)).rowcount
    db.commit()
    db.close()
    return f"deleted book {book_id}" if gone else f"no book {book_id}"


delete_book.kit_confirm = True  # writes: run_tools asks a person first
delete_book.kit_refused = "Book {book_id} was not deleted."  # said after a no
TOOLS = [calculator, day_of_week, days_between, search_catalogue]


def _has(arg: str, word: str):
    return lambda a: word in str(a.get(arg, "")).lower()


def _equals(value):
    def check(a):
        try:
            return abs(calculator(str(a.get("expression", ""))) - value) < 1e-6
        except Exception:
            return False
    return check


TASKS = [  # (question, the tool to call, a check of its arguments)
    ("What is 37 * 48?", "calculator", _equals(1776)),
    ("Which books by Jane Austen do we have?", "search_catalogue",
     _has("author", "austen")),
    ("Which day of the week is 2026-12-25?", "day_of_week",
     lambda a: a.get("date") == "2026-12-25"),
    ("Do we have Moby-Dick in the library?", "search_catalogue", _has("title", "moby")),
    ("Compute (120 + 80) / 4.", "calculator", _equals(50)),
    ("How many days are there from 2026-12-01 to 2026-12-24?", "days_between",
     lambda a: (a.get("start"), a.get("end")) == ("2026-12-01", "2026-12-24")),
    ("Find the books by Leo Tolstoy in the catalogue.", "search_catalogue",
     _has("author", "tolstoy")),
    ("What is 2 to the power of 10?", "calculator", _equals(1024)),
    ("Is Dracula on loan at the moment?", "search_catalogue", _has("title", "dracula")),
    ("On which day of the week was 1813-01-28?", "day_of_week",
     lambda a: a.get("date") == "1813-01-28"),
    ("What is 15 percent of 240?", "calculator", _equals(36)),
    ("List the books by Charles Dickens that we hold.", "search_catalogue",
     _has("author", "dickens")),
]


def score(model, tasks=None, constrain: bool = True, **options) -> list[dict]:
    """Ask each task once (required tool call); did it call the right tool well?

    top_k=1 always takes the likeliest token, as temperature 0 does, but lets
    the engine reuse the tools prompt that every task shares (temperature 0
    asks for a fresh start each time, notebook 01).
    """
    from kit.errors import KitError

    options = {"top_k": 1, "max_tokens": 60, **options}
    out = []
    for question, tool, check in tasks or TASKS:
        t0 = time.perf_counter()
        answer = model.chat([{"role": "user", "content": question}], tools=TOOLS,
                            tool_choice="required", constrain=constrain, **options)
        try:
            answer.text  # noqa: B018 (runs the generation)
            call = answer.tool_calls[0]
            ok = call.name == tool and check(call.arguments)
            got = str(call)
        except KitError:  # no valid call at all (possible without the grammar)
            ok, got = False, answer.raw.strip()[:60] or "(nothing)"
        out.append({"question": question, "expected": tool, "got": got, "ok": ok,
                    "seconds": round(time.perf_counter() - t0, 1)})
    return out
