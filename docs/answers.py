"""Copy the challenges and their hidden solutions from the notebooks into the
instructor guide, between its `<!-- answers:start -->` and `<!-- answers:end -->`
lines, so the guide's answers are always the notebooks' own.

    python docs/answers.py           # rewrite that part of the guide
    python docs/answers.py --check   # exit 1 if the guide is out of date
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "instructor-guide.md"
START, END = "<!-- answers:start -->", "<!-- answers:end -->"
LESSON = re.compile(r"^\d\d_.+\.ipynb$")


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def challenges(path: Path) -> list[tuple[str, str, str]]:
    """(title, question, solution) for each challenge of a notebook."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    found = []
    for cell, nxt in zip(cells, cells[1:] + [None]):
        text = _source(cell).strip()
        if cell.get("cell_type") != "markdown" or "## Challenge" not in text:
            continue
        lines = text[text.index("> ## Challenge"):].splitlines() \
            if "> ## Challenge" in text else text.splitlines()
        title = re.sub(r"^>?\s*##\s*", "", lines[0]).strip()
        question = " ".join(l.lstrip(">").strip() for l in lines[1:]).strip()
        solution = ""
        if nxt is not None and "<summary>Solution</summary>" in _source(nxt):
            body = _source(nxt)
            body = body.split("<summary>Solution</summary>", 1)[1]
            solution = body.rsplit("</details>", 1)[0].strip()
        found.append((title, re.sub(r"\s+", " ", question), solution))
    return found


def _heading(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    first = _source(cells[0]).strip().splitlines()[0] if cells else path.stem
    return first.lstrip("# ").strip()


def render(notebooks: Path = ROOT / "notebooks") -> str:
    parts = []
    for path in sorted(p for p in notebooks.glob("*.ipynb") if LESSON.match(p.name)):
        items = challenges(path)
        if not items:
            continue
        parts.append(f"### {_heading(path)}\n\n`notebooks/{path.name}`\n")
        for title, question, solution in items:
            stop = "" if title[-1:] in ".?!" else "."
            parts.append(f"**{title}{stop}** {question}\n\n"
                         f"{solution or '(no solution given)'}\n")
    return "\n".join(parts)


def updated(guide_text: str, answers: str) -> str:
    if START not in guide_text or END not in guide_text:
        raise SystemExit(f"{GUIDE} lacks the {START} and {END} lines; put them back "
                         "where the answers belong.")
    head, rest = guide_text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n\n{answers}\n{END}{tail}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = GUIDE.read_text(encoding="utf-8")
    new = updated(text, render())
    if "--check" in argv:
        if new != text:
            print("The instructor guide's answers differ from the notebooks' "
                  "solutions: run `python docs/answers.py`.")
            return 1
        return 0
    if new != text:
        tmp = GUIDE.with_suffix(".md.partial")
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, GUIDE)
        print(f"Updated the answers in {GUIDE.relative_to(ROOT)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
