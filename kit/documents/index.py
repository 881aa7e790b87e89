"""Embed a folder's chunks once, keep them on disk, search them (notebook 08).

>>> index = index_folder("my-folder")     # reads, chunks, embeds (progress bar)
Indexed 28 files (194 chunks): 28 embedded now, 0 unchanged, 0 skipped, in 9.1 s
>>> index.search("When does the library open on Sunday?", k=3)
>>> index.search("Sunday opening", method="bm25")       # keywords instead

Where the index lives: under $KIT_HOME/indexes/, one folder per indexed
folder (its name plus a hash of its full path) and per embedding model and
chunk size. Not inside your folder: it may be read-only (the kit's bundled
set) or synced to a cloud drive, and an index holds your text.

What is stored: one .npz file per document *content* (named by its SHA-256:
the chunks' text and positions, and their vectors), and manifest.json
listing which file has which checksum. Each is written whole, through a
temporary file and a rename, so an interrupted run leaves only complete
files; the next run reuses them and embeds only what is new or changed.

Numpy keeps every vector in memory and compares the question with all of
them: instant for a workshop folder (thousands of chunks). Beyond about
100,000 chunks, reach for an established embedded vector store with an
approximate-nearest-neighbour index (for example LanceDB, Chroma, or
SQLite with the sqlite-vec extension) rather than a bigger numpy array.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kit.documents.bm25 import BM25, words
from kit.documents.chunk import OVERLAP, SIZE, Chunk, check_sizes, chunk_document
from kit.documents.read import (MAX_BYTES, Skipped, Unreadable, document_files, printable,
                                read_file)
from kit.errors import BadParameter, EmbeddingTruncated, NoDocuments
from kit.util import atomic_write_bytes, atomic_write_text, sha256_file

EMBEDDER = "all-minilm:l6-v2"
BATCH = 32  # chunks per embedding call; each finished file is saved at once
WEAK = 0.25  # a best cosine below this: the folder probably lacks the answer
METHODS = ("embeddings", "bm25")
_COMMON_ENGLISH = set("""a an the and or but if of to in on at for from with by about
as is are was were be been do does did can could should would will may how what
when where which who why i you we it this that these those there my your our not
no per much many any have has""".split())


def looks_english(text: str) -> bool:
    """A rough guess: do common English words make up a fifth of the text?"""
    ws = words(text)
    return len(ws) < 4 or sum(w in _COMMON_ENGLISH for w in ws) / len(ws) >= 0.2


def index_dir(folder, embedder_name: str, size: int, overlap: int, home=None) -> Path:
    """$KIT_HOME/indexes/<folder>-<hash of its path>/<model>-w<size>-o<overlap>."""
    from kit.settings import get_settings

    folder = Path(folder).expanduser().resolve()
    key = hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.name or "root")[:40]
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", embedder_name)
    root = Path(home) if home else get_settings().home / "indexes"
    return root / f"{slug}-{key}" / f"{model}-w{size}-o{overlap}"


@dataclass
class Hit:
    rank: int
    score: float
    chunk: Chunk
    method: str

    def __str__(self) -> str:
        text = " ".join(self.chunk.text.split())
        return (f"{self.rank}. {self.score:.3f}  {printable(self.chunk.where())}\n"
                f"   {text[:200]}{'...' if len(text) > 200 else ''}")


class Results(list):
    """Hits, best first, with `.notices` (a weak match, a non-English question)."""

    def __init__(self, hits=(), notices=()):
        super().__init__(hits)
        self.notices = list(notices)

    def __str__(self) -> str:
        lines = [str(h) for h in self] or ["(nothing found)"]
        return "\n".join(lines + [f"NOTE: {n}" for n in self.notices])

    def _repr_pretty_(self, p, cycle) -> None:  # Jupyter shows the readable form
        p.text(str(self))


@dataclass
class IndexReport:
    folder: str
    files: list[str] = field(default_factory=list)
    embedded: list[str] = field(default_factory=list)  # new or changed files
    reused: list[str] = field(default_factory=list)  # unchanged: not embedded again
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0
    new_chunks: int = 0
    truncated: list[str] = field(default_factory=list)  # chunks over the model's context
    seconds: float = 0.0

    def line(self) -> str:
        return (f"Indexed {len(self.files)} files ({self.chunks} chunks): "
                f"{len(self.embedded)} embedded now, {len(self.reused)} unchanged, "
                f"{len(self.skipped)} skipped, in {self.seconds:.1f} s")

    def __str__(self) -> str:
        out = [self.line()]
        out += [f"  skipped {s}" for s in self.skipped]
        if self.truncated:
            out.append(f"  {len(self.truncated)} chunk(s) were longer than the "
                       "embedding model's context: only their start was embedded "
                       "(use a smaller chunk size): " + "; ".join(self.truncated[:5]))
        return "\n".join(out)

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(str(self))


def _embedder(embedder):
    if embedder is None or isinstance(embedder, str):
        from kit.engines import load

        return load(embedder or EMBEDDER)
    return embedder


def _token_limit(model) -> int:
    return int(getattr(model, "n_ctx", 512) or 512)


def _embed(model, texts: list[str]) -> np.ndarray:
    """Vectors for texts; truncation is collected for the report, not warned twice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EmbeddingTruncated)
        try:
            out = model.embed(texts, progress=False)  # the index has its own bar
        except TypeError:  # a model whose embed() takes no options
            out = model.embed(texts)
    return np.asarray(out, dtype=np.float32)


def _save(path: Path, vectors: np.ndarray, chunks: list[Chunk]) -> None:
    meta = [{k: v for k, v in c.to_dict().items() if k != "file"} for c in chunks]
    buf = io.BytesIO()
    np.savez(buf, vectors=vectors.astype(np.float32), chunks=np.array(json.dumps(meta)))
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path, name: str) -> tuple[np.ndarray, list[Chunk]]:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["chunks"]))
        return data["vectors"], [Chunk(file=name, **m) for m in meta]


def _progress(progress, total: int):
    """A function (done, total) -> None: a tqdm bar, the caller's, or nothing."""
    if callable(progress):
        return progress, lambda: None
    if not progress or not total:
        return (lambda done, total: None), lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="chunk", desc="Embedding")

    def update(done, total):
        bar.update(done - bar.n)

    return update, bar.close


def index_folder(folder, embedder=None, size: int = SIZE, overlap: int = OVERLAP,
                 max_bytes: int = MAX_BYTES, progress=True, batch: int = BATCH,
                 home=None) -> "Index":
    """Read, chunk and embed a folder; unchanged files come from the saved index.

    embedder: a kit model name (default all-minilm:l6-v2) or a loaded model
    with .embed(texts). progress: True (a bar), False, or f(done, total).
    """
    check_sizes(size, overlap)
    if not isinstance(batch, int) or batch < 1:
        raise BadParameter("batch", batch, "a whole number of chunks, at least 1")
    t0 = time.perf_counter()
    folder = Path(folder).expanduser()
    files, skipped = document_files(folder)
    if not files:  # say so before loading any model
        raise NoDocuments(folder, "it holds no documents", skipped)
    model = _embedder(embedder)
    where = index_dir(folder, getattr(model, "name", str(embedder)), size, overlap, home)
    manifest_path = where / "manifest.json"
    try:
        old = json.loads(manifest_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        old = {}
    report = IndexReport(str(folder), skipped=list(skipped))
    entries, todo = {}, []  # todo: (name, sha, chunks) still to embed
    done_files = {}  # name: (vectors, chunks)
    for path in files:
        name = path.relative_to(folder).as_posix()
        try:
            st = path.stat()
        except OSError as exc:  # vanished, or a broken link
            report.skipped.append(Skipped(name, f"cannot be opened ({exc.strerror})"))
            continue
        if st.st_size > max_bytes:  # refuse before hashing half a gigabyte
            report.skipped.append(Skipped(name, f"too large ({st.st_size / 1e6:,.0f} "
                                  f"MB, the limit is {max_bytes / 1e6:,.0f} MB): split "
                                  "it, or pass a larger max_bytes if you mean it"))
            continue
        prev = old.get(name, {})
        same = prev.get("size") == st.st_size and prev.get("mtime_ns") == st.st_mtime_ns
        try:
            sha = prev["sha256"] if same and "sha256" in prev else sha256_file(path)
        except OSError as exc:  # no permission to read it
            report.skipped.append(Skipped(name, f"cannot be opened ({exc.strerror})"))
            continue
        entry = {"sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        saved = where / "files" / f"{sha}.npz"
        if saved.is_file():
            try:
                done_files[name] = _load(saved, name)
                entries[name] = entry
                report.reused.append(name)
                continue
            except Exception:  # damaged on disk: embed it again
                saved.unlink(missing_ok=True)
        try:
            chunks = chunk_document(read_file(path, name, max_bytes), size, overlap)
        except Unreadable as exc:
            report.skipped.append(Skipped(name, str(exc)))
            continue
        if not chunks:
            report.skipped.append(Skipped(name, "empty: no words in it"))
            continue
        entries[name] = entry
        todo.append((name, sha, chunks))
    if not entries:
        raise NoDocuments(folder, "none of its files could be read", report.skipped)
    total = sum(len(c) for _, _, c in todo)
    update, close = _progress(progress, total)
    limit, done = _token_limit(model), 0
    try:
        for name, sha, chunks in todo:
            vectors = []
            for i in range(0, len(chunks), batch):
                part = chunks[i:i + batch]
                vectors.append(_embed(model, [c.text for c in part]))
                cut = getattr(getattr(model, "embed_stats", None), "truncated", [])
                report.truncated += [f"{printable(part[j].where())} ({n} tokens, limit "
                                     f"{limit})" for j, n in cut]
                done += len(part)
                update(done, total)
            done_files[name] = (np.concatenate(vectors), chunks)
            _save(where / "files" / f"{sha}.npz", *done_files[name])
            report.embedded.append(name)
    finally:
        close()
    atomic_write_text(manifest_path, json.dumps(
        {"folder": str(folder.resolve()), "embedder": getattr(model, "name", None),
         "size": size, "overlap": overlap, "files": entries}, indent=1))
    keep = {e["sha256"] for e in entries.values()}
    for stale in (where / "files").glob("*.npz"):  # changed or deleted files
        if stale.stem not in keep:
            stale.unlink(missing_ok=True)
    vectors, chunks = [], []
    for name in entries:  # in the folder's (sorted) order
        v, c = done_files[name]
        vectors.append(v)
        chunks += c
    report.files = list(entries)
    report.chunks, report.new_chunks = len(chunks), total
    report.seconds = time.perf_counter() - t0
    return Index(folder, chunks, np.concatenate(vectors), model, report, where)


class Index:
    """Chunks and their vectors, searchable by meaning or by keywords."""

    def __init__(self, folder, chunks, vectors, embedder, report=None, path=None):
        self.folder, self.chunks, self.vectors = Path(folder), chunks, vectors
        self.embedder, self.report, self.path = embedder, report, path
        self._bm25 = None

    def __len__(self) -> int:
        return len(self.chunks)

    def __repr__(self) -> str:
        return f"<Index {self.folder}: {len(self.chunks)} chunks>"

    @property
    def bm25(self) -> BM25:
        if self._bm25 is None:
            self._bm25 = BM25([c.text for c in self.chunks])
        return self._bm25

    def similarities(self, query: str) -> np.ndarray:
        """Cosine similarity of the query with every chunk (vectors are unit length)."""
        q = _embed(self.embedder, [query])[0]
        return self.vectors @ (q / max(float(np.linalg.norm(q)), 1e-12))

    def search(self, query: str, k: int = 3, method: str = "embeddings") -> Results:
        """The k chunks that best match the query, best first."""
        if method not in METHODS:
            raise BadParameter("method", method, " or ".join(repr(m) for m in METHODS))
        if not isinstance(k, int) or k < 1:
            raise BadParameter("k", k, "a whole number of chunks, at least 1")
        if not query.strip():
            raise BadParameter("query", query, "some words to search for")
        notices = []
        if not looks_english(query):
            notices.append("This question does not look like English. The "
                           "embedding model and the keyword search match English "
                           "best here: results may be poor; ask in English, or use "
                           "a multilingual embedding model.")
        if method == "bm25":
            pairs = self.bm25.top(query, k)
            if not pairs:
                notices.append("No chunk contains any of these words: try other "
                               "words, or search by meaning (method='embeddings').")
        else:
            sims = self.similarities(query)
            order = np.argsort(-sims, kind="stable")[:k]
            pairs = [(int(i), float(sims[i])) for i in order]
            if pairs and pairs[0][1] < WEAK:
                notices.append(f"The best match is weak (similarity {pairs[0][1]:.2f}): "
                               "the documents may not hold the answer.")
        hits = [Hit(r, s, self.chunks[i], method) for r, (i, s) in enumerate(pairs, 1)]
        return Results(hits, notices)
