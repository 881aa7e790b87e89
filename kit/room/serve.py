"""Serving a pack over HTTP, so a room downloads from the instructor's laptop.

>>> server = make_server("room-pack", port=0)   # 127.0.0.1, a free port
>>> server.url
'http://127.0.0.1:41234/'

The kit's one file server (kit/fileserver.py) is enough for a room of thirty
laptops (the wifi is the bottleneck, not Python). Range requests let an
interrupted download continue where it stopped; .partial files and anything
a symlink would reach outside the pack are never served.
"""
from __future__ import annotations

from pathlib import Path

from kit.errors import PackError
from kit.fileserver import FileServer, RequestLog, access_line, file_response, inside, listing
from kit.room.common import MANIFEST
from kit.util import lan_addresses


def _hidden(path: Path) -> bool:
    return path.name.endswith(".partial")


def pack_app(folder: Path):
    """A Starlette app serving the files of one pack folder."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, RedirectResponse
    from starlette.routing import Route

    async def get(request):
        rel = request.path_params["rel"]
        path = inside(folder, rel)
        if path is None or _hidden(path):
            return PlainTextResponse("No such file in this pack", status_code=404)
        if path.is_dir():
            if rel and not request.url.path.endswith("/"):  # as http.server does
                return RedirectResponse(request.url.path + "/", status_code=301)
            return listing(folder, path, request.url.path, _hidden)
        return file_response(request, path)

    return Starlette(routes=[Route("/{rel:path}", get, methods=["GET", "HEAD"])])


class PackServer(FileServer):
    @property
    def url(self) -> str:
        return super().url + "/"


def make_server(directory, host: str = "127.0.0.1", port: int = 8765,
                quiet: bool = False) -> PackServer:
    """A server for a pack folder, bound but not yet serving."""
    folder = Path(directory).expanduser().resolve()
    if not (folder / MANIFEST).is_file():
        raise PackError(f"{folder} is not a pack (no {MANIFEST}): build one "
                        "with `kit pack build DIR --models NAME,...`.")
    app = RequestLog(pack_app(folder), on_done=None if quiet else access_line)
    try:
        return PackServer(app, host or "0.0.0.0", port, name="kit-pack")
    except OSError as exc:
        raise PackError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}): "
                        "another program may use that port; try --port "
                        f"{port + 1 if port else 8765}.") from exc


def serve_pack(directory, host: str = "127.0.0.1", port: int = 8765,
               quiet: bool = False) -> None:
    """Serve until Ctrl-C, printing the address learners should use."""
    server = make_server(directory, host, port, quiet)
    try:
        port = server.server_address[1]
        print(f"Serving the pack {Path(directory).resolve()} at {server.url}")
        if host in ("0.0.0.0", "::", ""):
            urls = [f"http://{ip}:{port}/" for ip in lan_addresses()]
            print("Note: listening on every network interface, so anyone on this "
                  "network can download the pack. Give learners one of:")
            for url in urls or ["http://<this computer's address>:%d/" % port]:
                print(f"  kit pack install {url}")
        else:
            print(f"Only this computer can reach it; for the room use "
                  f"--host 0.0.0.0. Try: kit pack install {server.url}")
        print("Press Ctrl-C to stop.", flush=True)
        server.serve_forever()  # uvicorn stops on Ctrl-C, then raises it here
    except KeyboardInterrupt:
        print("\nStopped serving the pack.", flush=True)
    finally:
        server.server_close()
