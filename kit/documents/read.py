"""Read a folder of documents into pages of plain text (notebook 08).

>>> docs, skipped = read_folder("my-folder")
>>> docs[0].name, len(docs[0].pages)          # ('report.pdf', 12)
>>> skipped[0]                                 # Skipped('photo.txt', 'looks binary ...')

Supported: .txt and .md (UTF-8, else Windows-1252), .html (the standard
library's parser), .pdf (pypdf) and .docx (the XML inside the zip). A file
that cannot be read is skipped with the reason, never half-read.

Limits: max_bytes (50 MB) bounds what is read from disk *and* what is
unpacked from it (a .docx's XML, a PDF's text), so a small compressed file
that expands to gigabytes (a "zip bomb") is skipped, not read. Only files
inside the folder named are read: links (to files or folders) are skipped
with the reason, so none can lead out of it.
"""
from __future__ import annotations

import io
import os
import re
import stat
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
        return f"{printable(self.name)}: {self.reason}"


def printable(name: str) -> str:
    """A file name safe to print: control characters (a newline, an escape
    that would recolour the terminal) shown as \\n or \\x1b, not obeyed."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode()
                   for c in name)


def _size(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} KB"


def _too_big(what: str, limit: int) -> Unreadable:
    return Unreadable(f"{what} more than {_size(limit)} (the limit), "
                      "far more than its size on disk: a \"zip bomb\" or a "
                      "mistake; not read. Split it, or pass a larger max_bytes "
                      "if you really mean it")


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


def read_text(data: bytes, limit: int = MAX_BYTES) -> list[str]:
    """A .txt or .md file's bytes; form feeds split it into pages."""
    return _decode(data).split(PAGE_BREAK)


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


def read_html(data: bytes, limit: int = MAX_BYTES) -> list[str]:
    """The visible text of an HTML page (no scripts, styles or head)."""
    parser = _HTMLText()
    parser.feed(_decode(data))
    parser.close()
    text = re.sub(r"[ \t]+", " ", "".join(parser.parts))
    return [re.sub(r"\n\s*\n+", "\n\n", text).strip()]


def read_pdf(data: bytes, limit: int = MAX_BYTES) -> list[str]:
    """The text of each page of a PDF (pypdf); encrypted ones need no password.

    pypdf bounds each stream it unpacks (75 MB by default); the text of all
    pages together is bounded here by `limit` characters.
    """
    import logging

    import pypdf

    # pypdf logs every repair it makes; the reason a file is skipped is enough
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:  # many "protected" PDFs open with an empty password
                ok = reader.decrypt("")
            except Exception as exc:  # e.g. AES without the cryptography package
                raise Unreadable(f"encrypted, and cannot be opened here ({exc})")
            if not ok:
                raise Unreadable("encrypted with a password: open it, and save an "
                                 "unprotected copy to index")
        pages, total = [], 0
        for page in reader.pages:
            pages.append(page.extract_text() or "")
            total += len(pages[-1])
            if total > limit:
                raise _too_big(f"its first {len(pages)} page(s) hold", limit)
    except Unreadable:
        raise
    except Exception as exc:  # pypdf raises many kinds on damaged files
        raise Unreadable(f"not a readable PDF ({type(exc).__name__}: {exc})")
    if not any(p.strip() for p in pages):
        raise Unreadable("a PDF with no text in it (scanned pages? they need "
                         "OCR first)")
    return pages


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _unzip(data: bytes, member: str, limit: int) -> bytes:
    """One member of a zip, refused beyond `limit` bytes unpacked: the size
    the zip declares is checked first, then the bytes actually produced
    (a forged header cannot get more through)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        info = z.getinfo(member)
        if info.file_size > limit:
            raise _too_big(f"it unpacks to {_size(info.file_size)}:", limit)
        with z.open(info) as f:
            out = f.read(limit + 1)
    if len(out) > limit:
        raise _too_big("it unpacks to", limit)
    return out


def read_docx(data: bytes, limit: int = MAX_BYTES) -> list[str]:
    """A Word file's paragraphs; a hard page break starts a new page."""
    try:
        root = ElementTree.fromstring(_unzip(data, "word/document.xml", limit))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError, EOFError,
            NotImplementedError, RuntimeError, ValueError) as exc:
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


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    """A regular file's bytes, never through a link (O_NOFOLLOW), at most max_bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block us
    except OSError as exc:
        if path.is_symlink():
            raise Unreadable("a link: only files inside the folder are read")
        raise Unreadable(f"cannot be opened ({exc.strerror or exc})")
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable("not a regular file (a device, pipe or socket)")
        if st.st_size > max_bytes:
            raise Unreadable(f"too large ({st.st_size / 1e6:,.0f} MB, the limit is "
                             f"{max_bytes / 1e6:,.0f} MB): split it, or pass a "
                             "larger max_bytes if you really mean it")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while we read it
        raise Unreadable(f"too large (over {max_bytes / 1e6:,.0f} MB, the limit)")
    return data


def read_file(path, name: str | None = None, max_bytes: int = MAX_BYTES) -> Document:
    """One file as a Document; raises Unreadable with the reason.

    max_bytes bounds both the file and what is unpacked from it.
    """
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise Unreadable(f"not a supported type (the kit reads {', '.join(SUFFIXES)})")
    try:
        pages = reader(_read_bytes(path, max_bytes), max_bytes)
    except OSError as exc:
        raise Unreadable(f"cannot be opened ({exc.strerror or exc})")
    except MemoryError:
        raise Unreadable("too large to unpack in this computer's memory")
    if not any(p.strip() for p in pages):
        raise Unreadable("empty: no text in it")
    return Document(name or path.name, tuple(pages))


def _link_reason(path: Path, root: Path) -> str:
    """Why a link is skipped: links are never followed, and one that leads
    out of the folder would show files the learner did not choose."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # broken, or a loop
        return "a broken link: not read"
    if not target.is_relative_to(root):
        return ("a link to outside the folder: not read (copy the file into "
                "the folder if you mean to index it)")
    kind = "folder" if target.is_dir() else "file"
    return (f"a link to the {kind} {printable(target.relative_to(root).as_posix())}"
            " inside this folder: links are not followed; what is there is "
            "read where it lies")


def document_files(folder) -> tuple[list[Path], list[Skipped]]:
    """The files of a folder (and its subfolders) the kit can read, sorted.

    Hidden files and folders (.git, .kit-index) are left out silently; every
    other entry left out is listed with why: an unsupported type, a link
    (never followed: one could lead out of the folder), a device or pipe.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise NoDocuments(folder, "it is not a folder" if folder.exists()
                          else "it does not exist")
    root = folder.resolve()
    files, skipped = [], []

    def skip(path, why):
        skipped.append(Skipped(path.relative_to(folder).as_posix(), why))

    for top, dirs, names in os.walk(folder, followlinks=False):
        top = Path(top)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for d in list(dirs):  # os.walk lists a linked folder among the folders
            if (top / d).is_symlink():
                dirs.remove(d)
                skip(top / d, _link_reason(top / d, root))
        for n in names:
            path = top / n
            if n.startswith("."):
                continue
            if path.is_symlink():
                skip(path, _link_reason(path, root))
            elif not path.is_file():
                skip(path, "not a regular file (a device, pipe or socket)")
            elif path.suffix.lower() in SUFFIXES:
                files.append(path)
            else:
                skip(path, "not a supported type (the kit reads "
                     f"{', '.join(SUFFIXES)})")
    files.sort()
    skipped.sort(key=lambda s: s.name)
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
