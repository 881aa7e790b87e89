"""Serving a pack over HTTP, so a room downloads from the instructor's laptop.

>>> server = make_server("room-pack", port=0)   # 127.0.0.1, a free port
>>> server.url
'http://127.0.0.1:41234/'

The standard library's threaded HTTP server is enough for a room of thirty
laptops (the wifi is the bottleneck, not Python): it needs no new package,
and each file goes out with the kernel's sendfile(). Range requests let an
interrupted download continue where it stopped.
"""
from __future__ import annotations

import os
import re
import socket
import sys
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from kit.errors import PackError
from kit.room.common import MANIFEST

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


class PackHandler(SimpleHTTPRequestHandler):
    """Files of one pack folder, with Range support; no .partial files."""

    server_version = "kit-pack"
    quiet = False

    def send_head(self):
        self._span = None
        path = self.translate_path(self.path)
        if os.path.isdir(path):
            return super().send_head()  # listing: pip's --find-links reads it
        if path.endswith(".partial") or not os.path.isfile(path):
            self.send_error(HTTPStatus.NOT_FOUND, "No such file in this pack")
            return None
        f = open(path, "rb")
        size = os.fstat(f.fileno()).st_size
        span = parse_range(self.headers.get("Range"), size)
        if span == "bad":
            f.close()
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        start, length = span or (0, size)
        if span:
            self.send_response(HTTPStatus.PARTIAL_CONTENT)
            self.send_header("Content-Range",
                             f"bytes {start}-{start + length - 1}/{size}")
        else:
            self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._span = (start, length)
        return f

    def copyfile(self, source, outputfile):
        try:
            if self._span is None:
                return super().copyfile(source, outputfile)
            self.connection.sendfile(source, *self._span)
        except (BrokenPipeError, ConnectionResetError):
            pass  # a laptop closed its lid: it can resume later

    def log_message(self, format, *args):
        if not self.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


class PackServer(ThreadingHTTPServer):
    daemon_threads = True  # Ctrl-C does not wait for slow laptops

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = "127.0.0.1" if host == "0.0.0.0" else host
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def make_server(directory, host: str = "127.0.0.1", port: int = 8765,
                quiet: bool = False) -> PackServer:
    """A server for a pack folder, bound but not yet serving."""
    folder = Path(directory).expanduser().resolve()
    if not (folder / MANIFEST).is_file():
        raise PackError(f"{folder} is not a pack (no {MANIFEST}): build one "
                        "with `kit pack build DIR --models NAME,...`.")
    handler = type("Handler", (PackHandler,), {"quiet": quiet})
    cls = type("Server", (PackServer,), {
        "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
    try:
        return cls((host, port), partial(handler, directory=str(folder)))
    except OSError as exc:
        raise PackError(f"Cannot listen on {host}:{port} ({exc.strerror}): "
                        "another program may use that port; try --port "
                        f"{port + 1 if port else 8765}.") from exc


def room_addresses() -> list[str]:
    """This computer's addresses on the local network (no packet is sent)."""
    found = []
    for probe in ("10.255.255.255", "192.168.255.255", "172.31.255.255"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((probe, 1))  # UDP connect only picks a route
                ip = s.getsockname()[0]
        except OSError:
            continue
        if ip not in found and not ip.startswith("127."):
            found.append(ip)
    return found


def serve_pack(directory, host: str = "127.0.0.1", port: int = 8765,
               quiet: bool = False) -> None:
    """Serve until Ctrl-C, printing the address learners should use."""
    server = make_server(directory, host, port, quiet)
    try:
        port = server.server_address[1]
        print(f"Serving the pack {Path(directory).resolve()} at {server.url}")
        if host in ("0.0.0.0", "::", ""):
            urls = [f"http://{ip}:{port}/" for ip in room_addresses()]
            print("Note: listening on every network interface, so anyone on this "
                  "network can download the pack. Give learners one of:")
            for url in urls or ["http://<this computer's address>:%d/" % port]:
                print(f"  kit pack install {url}")
        else:
            print(f"Only this computer can reach it; for the room use "
                  f"--host 0.0.0.0. Try: kit pack install {server.url}")
        print("Press Ctrl-C to stop.", flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nStopped serving the pack.", flush=True)
    finally:
        server.server_close()
