"""Read a folder of documents into pages of plain text (notebook 08).

>>> docs, skipped = read_folder("my-folder")
>>> docs[0].name, len(docs[0].pages)          # ('report.pdf', 12)
>>> skipped[0]                                 # Skipped('photo.txt', 'looks binary ...')

Supported: .txt and .md (UTF-8, else Windows-1252), .html (the standard
library's parser), .pdf (pypdf) and .docx (the XML inside the zip). A file
that cannot be read is skipped with the reason, never half-read.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from kit.errors import NoDocuments, Unreadable

SUFFIXES = (".txt", ".md", ".pdf", ".html", ".htm", ".docx")
MAX_BYTES = 50_000_000  # a 50 MB text is ~25,000 pages: larger is a mistake
PAGE_BREAK = "\f"  # form feed: pdftotext and many exports mark pages with it


@dataclass(frozen=True)
class Document:
    """One file's text, page by page (a text file without page breaks: one page)."""

    name: str  # the path relative to the folder, with "/" separators
    pages: tuple[str, ...]

    @property
    def characters(self) -> int:
        return sum(len(p) for p in self.pages)


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: {self.reason}"


def _decode(data: bytes) -> str:
    head = data[:8192]
    if b"\x00" in head:
        raise Unreadable("looks binary (it contains zero bytes), not text: "
                         "check the file's extension")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    control = sum(1 for c in text[:8192] if ord(c) < 32 and c not in "\t\n\r\f")
    if control > 0.05 * max(1, min(len(text), 8192)):
        raise Unreadable("looks binary (many control characters), not text: "
                         "check the file's extension")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: Path) -> list[str]:
    """A .txt or .md file; form feeds split it into pages."""
    return _decode(path.read_bytes()).split(PAGE_BREAK)


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "head", "nav", "noscript", "svg"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
             "section", "article", "table", "ul", "ol", "dt", "dd", "pre", "hr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(data)


def read_html(path: Path) -> list[str]:
    """The visible text of an HTML page (no scripts, styles or head)."""
    parser = _HTMLText()
    parser.feed(_decode(path.read_bytes()))
    parser.close()
    text = re.sub(r"[ \t]+", " ", "".join(parser.parts))
    return [re.sub(r"\n\s*\n+", "\n\n", text).strip()]


def read_pdf(path: Path) -> list[str]:
    """The text of each page of a PDF (pypdf); encrypted ones need no password."""
    import logging

    import pypdf

    # pypdf logs every repair it makes; the reason a file is skipped is enough
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(path)
        if reader.is_encrypted:
            try:  # many "protected" PDFs open with an empty password
                ok = reader.decrypt("")
            except Exception as exc:  # e.g. AES without the cryptography package
                raise Unreadable(f"encrypted, and cannot be opened here ({exc})")
            if not ok:
                raise Unreadable("encrypted with a password: open it, and save an "
                                 "unprotected copy to index")
        pages = [page.extract_text() or "" for page in reader.pages]
    except Unreadable:
        raise
    except Exception as exc:  # pypdf raises many kinds on damaged files
        raise Unreadable(f"not a readable PDF ({type(exc).__name__}: {exc})")
    if not any(p.strip() for p in pages):
        raise Unreadable("a PDF with no text in it (scanned pages? they need "
                         "OCR first)")
    return pages


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def read_docx(path: Path) -> list[str]:
    """A Word file's paragraphs; a hard page break starts a new page."""
    try:
        with zipfile.ZipFile(path) as z:
            root = ElementTree.fromstring(z.read("word/document.xml"))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as exc:
        raise Unreadable(f"not a readable .docx file ({exc})")
    pages, lines = [], []
    for para in root.iter(f"{_W}p"):
        line = []
        for node in para.iter():
            if node.tag == f"{_W}t":
                line.append(node.text or "")
            elif node.tag == f"{_W}tab":
                line.append("\t")
            elif node.tag == f"{_W}br" and node.get(f"{_W}type") == "page":
                lines.append("".join(line))
                pages.append("\n".join(lines))
                lines, line = [], []
        lines.append("".join(line))
    pages.append("\n".join(lines))
    return [p.strip("\n") for p in pages]


READERS = {".txt": read_text, ".md": read_text, ".html": read_html,
           ".htm": read_html, ".pdf": read_pdf, ".docx": read_docx}


def read_file(path, name: str | None = None, max_bytes: int = MAX_BYTES) -> Document:
    """One file as a Document; raises Unreadable with the reason."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise Unreadable(f"not a supported type (the kit reads {', '.join(SUFFIXES)})")
    size = path.stat().st_size
    if size > max_bytes:
        raise Unreadable(f"too large ({size / 1e6:,.0f} MB, the limit is "
                         f"{max_bytes / 1e6:,.0f} MB): split it, or pass a larger "
                         "max_bytes if you really mean it")
    try:
        pages = reader(path)
    except OSError as exc:
        raise Unreadable(f"cannot be opened ({exc.strerror or exc})")
    if not any(p.strip() for p in pages):
        raise Unreadable("empty: no text in it")
    return Document(name or path.name, tuple(pages))


def document_files(folder) -> tuple[list[Path], list[Skipped]]:
    """The files of a folder (and its subfolders) the kit can read, sorted.

    Hidden files and folders (.git, .kit-index) are left out silently;
    other files of an unsupported type are listed as skipped.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise NoDocuments(folder, "it is not a folder" if folder.exists()
                          else "it does not exist")
    files, skipped = [], []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix.lower() in SUFFIXES:
            files.append(path)
        else:
            skipped.append(Skipped(rel.as_posix(), "not a supported type (the kit "
                                   f"reads {', '.join(SUFFIXES)})"))
    return files, skipped


def read_folder(folder, max_bytes: int = MAX_BYTES) -> tuple[list[Document], list[Skipped]]:
    """Every readable document in a folder, and the files skipped with why."""
    folder = Path(folder).expanduser()
    files, skipped = document_files(folder)
    docs = []
    for path in files:
        name = path.relative_to(folder).as_posix()
        try:
            docs.append(read_file(path, name, max_bytes))
        except Unreadable as exc:
            skipped.append(Skipped(name, str(exc)))
    return docs, skipped
