"""The kit's tools as a Model Context Protocol server (`kit mcp serve`, notebook 11).

Any MCP host (Claude Desktop, VS Code, LM Studio, Jan, the kit's own agent)
starts it and can then search the library catalogue of notebook 09 and a
folder of documents from notebook 08. It runs on this computer and sees
only that catalogue and that folder.

    kit mcp serve                          stdio: the host starts it
    kit mcp serve --folder ~/Documents     search that folder's documents
    kit mcp serve --http --port 8765       streamable HTTP on 127.0.0.1 (a key)

Tools that only read say so (readOnlyHint); renew_loan changes the
catalogue, says so, and asks the person through the host first (MCP
elicitation): a host that cannot ask gets an error and nothing changes.
The catalogue is the server's own copy, fresh each time it starts.

>>> server = build_server(search="keywords")     # an mcp MCPServer
>>> server.run()                                  # stdio, until the host leaves
"""
from __future__ import annotations

import datetime as dt
import sqlite3
import sys
import threading
from typing import Annotated

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from kit.tools import library

NAME = "kit-library"
READS = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
CHANGES = ToolAnnotations(readOnlyHint=False, destructiveHint=False,
                          idempotentHint=False, openWorldHint=False)
RENEW_DAYS = 14
PASSAGE = 1200  # characters at most of each passage (a chunk is ~120 words)
SEARCHES = ("auto", "meaning", "keywords")
INSTRUCTIONS = (
    "Tools of a public library: search its catalogue by author or title, list "
    "the books on loan, count days between dates, and search the library's "
    "documents (opening hours, rules, events), each result with its file, page "
    "and a snippet. renew_loan changes the catalogue and asks the person first.")

class Confirm(BaseModel):
    """The person's answer to 'may I change this?'."""

    confirm: bool = Field(description="yes: do it")


# ---- the catalogue (notebook 09's tools, as lines a small model reads well) ----

def _date(value: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value.strip())
    except (ValueError, AttributeError) as exc:
        raise ToolError(f"{what} {value!r} is not a date: write it as YYYY-MM-DD, "
                        "e.g. 2026-12-24") from exc


def _lines(value, none: str) -> str:
    if isinstance(value, (list, tuple)):
        value = "\n".join(str(v) for v in value)
    return str(value).strip() or none


def search_catalogue(
    author: Annotated[str, Field(description="part of the author's name, e.g. Austen")] = "",
    title: Annotated[str, Field(description="part of the title, e.g. Emma")] = "",
) -> str:
    """Find books in the library catalogue by author and/or title words."""
    if not (author.strip() or title.strip()):
        raise ToolError("give an author or some title words to search for")
    return _lines(library.search_catalogue(author=author, title=title),
                  "No book in the catalogue matches.")


def books_on_loan(
    due_by: Annotated[str, Field(description="only loans due on or before this "
                                 "date, YYYY-MM-DD; empty for all")] = "",
) -> str:
    """List the books that are on loan now, with the date each is due back."""
    query = "SELECT id, title, author, due FROM books WHERE status = 'on loan'"
    args: tuple = ()
    if due_by.strip():
        query += " AND due <= ?"
        args = (_date(due_by, "due_by").isoformat(),)
    db = sqlite3.connect(library.catalogue())
    try:
        rows = db.execute(query + " ORDER BY due, title LIMIT 30", args).fetchall()
    finally:
        db.close()
    return "\n".join(f"{t} by {a}, id {i}: due {d}" for i, t, a, d in rows) \
        or "No book is on loan" + (f" due by {due_by}." if due_by.strip() else ".")


def days_between(
    start: Annotated[str, Field(description="the first date, YYYY-MM-DD")],
    end: Annotated[str, Field(description="the second date, YYYY-MM-DD")],
) -> int:
    """How many days lie from one date to another."""
    return (_date(end, "end") - _date(start, "start")).days


def day_of_week(
    date: Annotated[str, Field(description="the date, YYYY-MM-DD, e.g. 2026-12-25")],
) -> str:
    """The day of the week of a date."""
    return _date(date, "date").strftime("%A")


def _loan(book_id: int) -> tuple[str, str]:
    db = sqlite3.connect(library.catalogue())
    try:
        row = db.execute("SELECT title, status, due FROM books WHERE id = ?",
                         (book_id,)).fetchone()
    finally:
        db.close()
    if row is None:
        raise ToolError(f"there is no book with id {book_id}; search the catalogue "
                        "for its id first")
    title, status, due = row
    if status != "on loan":
        raise ToolError(f"{title} (id {book_id}) is not on loan ({status}), so "
                        "there is nothing to renew")
    return title, due


def ask_to_renew(book_id: int, ctx: Context) -> Elicit[Confirm]:
    """The question the host puts to the person before renew_loan changes anything."""
    caps = ctx.client_capabilities
    if caps is None or caps.elicitation is None:
        raise ToolError("renew_loan changes the catalogue, so it needs the person's "
                        "yes, and this host cannot ask (it does not support MCP "
                        "elicitation). Nothing was changed; renew at a desk, or use "
                        "a host that can ask")
    title, due = _loan(book_id)
    new = dt.date.fromisoformat(due) + dt.timedelta(days=RENEW_DAYS)
    return Elicit(f"Renew the loan of {title} (id {book_id}) from {due} to "
                  f"{new.isoformat()}? This changes the catalogue.", Confirm)


def renew_loan(
    book_id: Annotated[int, Field(description="the book's id number in the catalogue")],
    answer: Annotated[ElicitationResult[Confirm], Resolve(ask_to_renew)],
) -> str:
    """Renew a book's loan by two weeks (changes the catalogue; asks the person first)."""
    if not (isinstance(answer, AcceptedElicitation) and answer.data.confirm):
        return f"Not renewed: the person did not agree, so book {book_id} is unchanged."
    title, due = _loan(book_id)
    new = (dt.date.fromisoformat(due) + dt.timedelta(days=RENEW_DAYS)).isoformat()
    db = sqlite3.connect(library.catalogue())
    try:
        db.execute("UPDATE books SET due = ? WHERE id = ?", (new, book_id))
        db.commit()
    finally:
        db.close()
    return f"Renewed: {title} (id {book_id}) is now due on {new}."


# ---- documents (notebook 08's index, searched by meaning or by keywords) ------

class DocumentSearch:
    """A folder's index, made on the first search (by meaning if the embedding
    model is installed, else by keywords), then kept."""

    def __init__(self, folder=None, search: str = "auto"):
        if search not in SEARCHES:
            raise ValueError(f"search is one of {SEARCHES}, not {search!r}")
        self.folder, self.search = folder, search
        self._index, self._method, self._lock = None, "", threading.Lock()

    def warm(self) -> None:
        """Index in the background now, so the first search does not wait long."""
        def work():
            try:
                self.index()
            except Exception:  # the first search raises it again, as a tool error
                pass

        threading.Thread(target=work, daemon=True, name="kit-mcp-index").start()

    def index(self):
        from pathlib import Path

        from kit.documents import bundled_folder
        from kit.errors import ModelNotFound

        with self._lock:
            if self._index is not None:
                return self._index, self._method
            folder = Path(self.folder or bundled_folder()).expanduser()
            if self.search != "keywords":
                from kit.documents.index import index_folder

                try:
                    self._index = index_folder(folder, progress=False)
                    self._method = "embeddings"
                except ModelNotFound:
                    if self.search == "meaning":
                        raise
            if self._index is None:
                self._index, self._method = keyword_index(folder), "bm25"
            return self._index, self._method

    def find(self, query: str, k: int = 3) -> str:
        from kit.errors import KitError

        if not query.strip():
            raise ToolError("give some words to search for")
        try:
            index, method = self.index()
            hits = index.search(query, k=k, method=method)
        except KitError as exc:
            raise ToolError(str(exc)) from exc
        # One passage a paragraph, where it is first: "hours.md, line 3: ...".
        # The whole chunk, not a shorter snippet: the answer may be its end.
        lines = [f"{h.chunk.where()}: {' '.join(h.chunk.text.split())[:PASSAGE]}"
                 for h in hits]
        return "\n\n".join(lines + [f"Note: {n}" for n in hits.notices]) \
            or "No passage matches."


def documents_tool(docs: DocumentSearch):
    """The search_documents tool over one DocumentSearch."""

    def search_documents(
        query: Annotated[str, Field(description="what to look for, in a few words")],
        k: Annotated[int, Field(description="how many passages", ge=1, le=10)] = 3,
    ) -> str:
        """Search the library's documents; each passage with its file, page and a snippet."""
        return docs.find(query, k)

    return search_documents


def keyword_index(folder):
    """An Index that searches by keywords only (no embedding model needed)."""
    import numpy as np

    from kit.documents.chunk import chunk_document
    from kit.documents.index import Index
    from kit.documents.read import read_folder
    from kit.errors import NoDocuments

    docs, skipped = read_folder(folder)
    chunks = [c for d in docs for c in chunk_document(d)]
    if not chunks:
        raise NoDocuments(folder, "none of its files could be read", skipped)
    return Index(folder, chunks, np.zeros((len(chunks), 0), dtype=np.float32), None)


# ---- the server ----------------------------------------------------------------

def build_server(folder=None, search: str = "auto") -> MCPServer:
    """An MCPServer offering the catalogue tools and search over `folder`."""
    server = MCPServer(NAME, instructions=INSTRUCTIONS, log_level="WARNING",
                       version=_version())
    for fn in (search_catalogue, books_on_loan, days_between, day_of_week):
        server.add_tool(fn, annotations=READS, structured_output=False)
    docs = DocumentSearch(folder, search)
    docs.warm()
    server.add_tool(documents_tool(docs), annotations=READS, structured_output=False)
    server.add_tool(renew_loan, annotations=CHANGES, structured_output=False)
    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("local-llm-workshop-kit")
    except PackageNotFoundError:
        return "0"


def say(line: str) -> None:
    """A line for the person: on stderr, since stdout carries the protocol."""
    print(line, file=sys.stderr, flush=True)


# ---- streamable HTTP for a room: a key on every request, this computer's names --

class BearerKey:
    """ASGI middleware: each request must carry Authorization: Bearer KEY, the
    room's key or one made with `kit keys add` (compared in constant time)."""

    def __init__(self, app, key: str, ring=None):
        self.app, self.key, self.ring = app, key.encode(), ring

    def allows(self, header: str) -> bool:
        import hmac

        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        if hmac.compare_digest(token.encode(), self.key):
            return True
        return bool(self.ring is not None and self.ring.check(token))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from kit.server.guard import refuse

        headers = dict(scope.get("headers") or [])
        if not self.allows(headers.get(b"authorization", b"").decode("latin-1")):
            return await refuse(send, scope.get("path", ""), 401, (
                "This MCP server needs a key: send the header Authorization: "
                "Bearer KEY (the key is in the file or variable that `kit mcp "
                "serve --http` named when it started)."))
        return await self.app(scope, receive, send)


def http_app(server: MCPServer, key: str, hosts=(), ring=None):
    """The server's streamable HTTP app at /mcp, behind the key and the kit's
    request guard (Host and Origin checks: no DNS rebinding, body size)."""
    from mcp.server.transport_security import TransportSecuritySettings

    from kit.server.guard import RequestGuard

    # The kit's guard checks Host by name, whatever the port; the SDK's own
    # check is left off so one rule decides.
    app = server.streamable_http_app(transport_security=TransportSecuritySettings(
        enable_dns_rebinding_protection=False))
    return RequestGuard(BearerKey(app, key, ring), hosts=hosts)


def serve_http(folder=None, search: str = "auto", host: str = "127.0.0.1",
               port: int = 8765, allow_hosts=()) -> None:
    """Serve over streamable HTTP until Ctrl-C (`kit mcp serve --http`)."""
    import uvicorn

    from kit.server.keys import KeyRing
    from kit.server.launch import bind, is_local, room_key, url_for

    key, where = room_key()
    hosts = set(allow_hosts) | (set() if is_local(host) else {host})
    app = http_app(build_server(folder, search), key, hosts, KeyRing())
    sock = bind(host, port)
    url = url_for(host, sock.getsockname()[1]) + "/mcp"
    say(f"kit MCP server at {url} (streamable HTTP). Each request needs "
        f"Authorization: Bearer KEY; the key is in {where}. Ctrl-C stops it.")
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
