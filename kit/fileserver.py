"""One HTTP file server for `kit mirror` (a Hub mirror, notebook 02) and
`kit pack serve` (a room's pack): files of one folder, with HEAD and Range.

Built on Starlette (the web framework `kit serve` uses, through FastAPI) and
uvicorn. One asyncio loop holds every connection, so idle or slow clients
cost no thread, and a connection whose request does not arrive whole within
`request_timeout` seconds is closed. Nothing outside the folder is served or
listed: every path is resolved (symlinks included) and checked.

>>> server = FileServer(app, port=0).start()     # a background thread
>>> server.url                                  # 'http://127.0.0.1:41234'
>>> server.stop()
"""
from __future__ import annotations

import html
import mimetypes
import re
import sys
import threading
import time
from pathlib import Path

from kit.util import listen_socket

REQUEST_TIMEOUT = 10.0  # seconds for a request (line and headers) to arrive
KEEP_ALIVE = 5  # seconds an idle kept-alive connection stays open
BLOCK = 1 << 20
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int):
    """(start, length) for one byte range; None for the whole file; 'bad'.

    >>> parse_range("bytes=100-", 1000), parse_range("bytes=-10", 1000)
    ((100, 900), (990, 10))
    """
    m = _RANGE.fullmatch((header or "").strip())
    if not m or not (m[1] or m[2]):
        return None  # absent, several ranges or another unit: send it all
    if not m[1]:  # the last N bytes
        n = min(int(m[2]), size)
        return (size - n, n) if n else "bad"
    start = int(m[1])
    end = min(int(m[2]) if m[2] else size - 1, size - 1)
    if start >= size or end < start:
        return "bad"
    return start, end - start + 1


def inside(root: Path, rel: str) -> Path | None:
    """root/rel resolved, if it exists and stays inside root; else None.

    Resolving follows every symlink, so a link to /etc placed in the folder
    (or a '..' in the URL) leads nowhere.
    """
    try:
        path = (root / rel.lstrip("/")).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    return path if path.is_relative_to(root.resolve()) else None


def read_blocks(path: Path, offset: int, count: int, rate: float | None = None):
    """count bytes of path from offset, in blocks; at most `rate` bytes/s."""
    block = 64 * 1024 if rate else BLOCK
    t0 = time.monotonic()
    sent = 0
    with open(path, "rb") as f:
        f.seek(offset)
        while sent < count and (data := f.read(min(block, count - sent))):
            sent += len(data)
            yield data
            if rate and (ahead := sent / rate - (time.monotonic() - t0)) > 0:
                time.sleep(ahead)  # runs in a worker thread, not the loop


def file_response(request, path: Path, headers: dict | None = None,
                  media_type: str | None = None, blocks=read_blocks):
    """A 200, 206 or 416 answer for a file, honouring HEAD and one Range."""
    from starlette.responses import Response, StreamingResponse

    size = path.stat().st_size
    span = parse_range(request.headers.get("range"), size)
    if span == "bad":
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    start, length = span or (0, size)
    head = {"Accept-Ranges": "bytes", "Content-Length": str(length), **(headers or {})}
    if span:
        head["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    media_type = media_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    status = 206 if span else 200
    if request.method == "HEAD":
        return Response(status_code=status, headers=head, media_type=media_type)
    return StreamingResponse(blocks(path, start, length), status_code=status,
                             headers=head, media_type=media_type)


def listing(root: Path, folder: Path, url_path: str, hide=lambda p: False):
    """An HTML list of a folder's entries inside root (pip --find-links reads it)."""
    from starlette.responses import HTMLResponse

    names = []
    for p in sorted(folder.iterdir()):
        real = inside(root, str(p.relative_to(root)))
        if real is not None and not hide(p):
            names.append(p.name + ("/" if real.is_dir() else ""))
    items = "".join(f'<li><a href="{html.escape(n, quote=True)}">{html.escape(n)}</a></li>\n'
                    for n in names)
    title = html.escape(f"Directory listing for {url_path}")
    return HTMLResponse(f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>"
                        f"<body><h1>{title}</h1><hr><ul>\n{items}</ul><hr></body></html>\n")


class RequestLog:
    """ASGI wrapper: one dict a request (method, path, range, status, sent).

    Each entry is appended to `entries` as the request arrives (so a client
    never sees an answer before its entry) and passed to on_done() once
    answered.
    """

    def __init__(self, app, entries: list | None = None, on_done=None):
        self.app, self.entries, self.on_done = app, entries, on_done

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        query = scope.get("query_string", b"").decode("latin-1")
        headers = dict(scope.get("headers") or [])
        entry = {"method": scope["method"], "status": None, "sent": 0,
                 "path": scope["raw_path"].decode("latin-1") + (f"?{query}" if query else ""),
                 "range": headers.get(b"range", b"").decode("latin-1") or None,
                 "client": (scope.get("client") or ("-",))[0],
                 "http": scope.get("http_version", "1.1")}
        if self.entries is not None:
            self.entries.append(entry)

        async def counted(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            elif message["type"] == "http.response.body":
                entry["sent"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            if self.on_done:
                self.on_done(entry)


def access_line(entry: dict) -> None:
    """An access-log line on stderr, as Python's http.server writes it."""
    sys.stderr.write(f'{entry["client"]} "{entry["method"]} {entry["path"]} '
                     f'HTTP/{entry["http"]}" {entry["status"]} {entry["sent"] or "-"}\n')


def _protocol(request_timeout: float):
    """uvicorn's h11 protocol, plus a deadline for each request to arrive.

    uvicorn times out idle kept-alive connections but not a client that
    sends its headers a byte at a time; this closes any connection that has
    not sent a whole request within request_timeout seconds of opening (or
    of its last answer), and cuts running downloads when the server stops.
    It reads uvicorn's `cycle`, `transport` and `loop` attributes:
    tests/test_fileserver.py fails loudly if they change.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TimedH11(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self):
            super().on_response_complete()
            self._arm()

        def shutdown(self):
            # Stopping the server cuts downloads still running (as Ctrl-C
            # always did): the laptops resume them later, and no task is
            # left to cancel with a traceback.
            super().shutdown()
            if self.cycle is not None and not self.cycle.response_complete:
                self.transport.abort()  # close() would wait for a slow reader

        def _arm(self):
            cycle = self.cycle

            def check():
                if self.cycle is cycle and not self.transport.is_closing():
                    self.transport.close()  # no new request arrived in time
            self.loop.call_later(request_timeout, check)

    return TimedH11


class FileServer:
    """uvicorn serving an ASGI app on a socket bound at once (port 0: any free).

    serve_forever() runs in this thread until shutdown() (or Ctrl-C in the
    main thread); start() runs it in a background thread.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0,
                 request_timeout: float = REQUEST_TIMEOUT, name: str = "kit-fileserver"):
        import uvicorn

        self.socket = listen_socket(host, port)  # OSError: the caller says why
        config = uvicorn.Config(app, http=_protocol(request_timeout), interface="asgi3",
                                lifespan="off", log_config=None, log_level="warning",
                                access_log=False, timeout_keep_alive=KEEP_ALIVE,
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.name, self._done, self._thread = name, threading.Event(), None

    @property
    def server_address(self):
        return self.socket.getsockname()[:2]

    @property
    def url(self) -> str:
        host, port = self.server_address
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def serve_forever(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._done.set()

    def start(self) -> "FileServer":
        self._thread = threading.Thread(target=self.serve_forever, daemon=True,
                                        name=self.name)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        self.server.should_exit = True
        if self._thread is not None or self.server.started:
            self._done.wait(30)

    def server_close(self) -> None:
        self.socket.close()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
