"""Split pages into overlapping chunks that remember where they came from (notebook 08).

>>> chunk_spans("a b c d e f g", size=3, overlap=1)
[(0, 5), (4, 9), (8, 13)]                  # 'a b c', 'c d e', 'e f g'

Chunks are counted in words (runs of non-space characters) and never cross a
page, so every chunk can be cited as "file, page". The overlap repeats the
last words of one chunk at the start of the next, so a sentence cut at a
boundary still appears whole in one of the two.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from kit.errors import BadParameter

SIZE = 120  # words: about 160 MiniLM tokens, well inside its 512
OVERLAP = 30


@dataclass(frozen=True)
class Chunk:
    file: str  # relative to the indexed folder
    page: int  # 1-based
    start: int  # character offsets in the page's text
    end: int
    line: int  # the line of the page the chunk starts on, 1-based
    text: str
    pages: int = 1  # how many pages the file has (to cite "page" or not)

    def where(self) -> str:
        """'report.pdf, page 3' or 'hours.md, line 12'."""
        if self.pages > 1 or self.file.lower().endswith(".pdf"):  # a PDF has pages
            return f"{self.file}, page {self.page}"
        return f"{self.file}, line {self.line}"

    def to_dict(self) -> dict:
        return asdict(self)


def check_sizes(size: int, overlap: int) -> None:
    if not isinstance(size, int) or size < 1:
        raise BadParameter("size", size, "a whole number of words, at least 1 "
                           f"(default {SIZE})")
    if not isinstance(overlap, int) or not 0 <= overlap < size:
        raise BadParameter("overlap", overlap, f"a whole number from 0 to size - 1 "
                           f"({size - 1}); default {OVERLAP}")


def chunk_spans(text: str, size: int = SIZE, overlap: int = OVERLAP) -> list[tuple[int, int]]:
    """(start, end) character offsets of chunks of `size` words, `overlap` shared."""
    check_sizes(size, overlap)
    words = [m.span() for m in re.finditer(r"\S+", text)]
    spans, i = [], 0
    while i < len(words):
        j = min(i + size, len(words))
        spans.append((words[i][0], words[j - 1][1]))
        if j == len(words):
            break
        i += size - overlap
    return spans


def chunk_document(doc, size: int = SIZE, overlap: int = OVERLAP) -> list[Chunk]:
    """The chunks of one Document (kit.documents.read), page by page."""
    chunks = []
    for number, page in enumerate(doc.pages, start=1):
        for start, end in chunk_spans(page, size, overlap):
            chunks.append(Chunk(doc.name, number, start, end,
                                page.count("\n", 0, start) + 1, page[start:end],
                                len(doc.pages)))
    return chunks
