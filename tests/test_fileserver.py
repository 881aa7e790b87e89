"""kit.fileserver under `kit pack serve` and `kit mirror`: Range and HEAD, and
what hostile clients tried (symlinks out of the folder, bad ranges and
parameters, idle and slow connections), over real loopback sockets."""
import json
import os
import socket
import time

import httpx
import pytest

from kit import fileserver
from kit.fileserver import FileServer, parse_range
from kit.models import mirror as hubmirror
from kit.room.common import MANIFEST
from kit.room.serve import make_server, pack_app


@pytest.mark.parametrize("header,span", [
    (None, None), ("bytes=0-9", (0, 10)), ("bytes=90-", (90, 10)),
    ("bytes=95-500", (95, 5)), ("bytes=-30", (70, 30)), ("bytes=100-", "bad"),
    ("bytes=5-2", "bad"), ("bytes=0-1,5-6", None), ("items=0-1", None),
])
def test_parse_range(header, span):
    assert parse_range(header, 100) == span


@pytest.fixture
def pack(tmp_path):
    """A pack-shaped folder with a file, a .partial, and two links to /etc."""
    root = tmp_path / "pack"
    (root / "models").mkdir(parents=True)
    (root / MANIFEST).write_text(json.dumps({"format": "kit-pack"}))
    (root / "models" / "m.gguf").write_bytes(bytes(range(256)) * 4)
    (root / "models" / "x.gguf.partial").write_bytes(b"half")
    os.symlink("/etc/passwd", root / "models" / "passwd")
    os.symlink("/etc", root / "etc")
    return root


@pytest.fixture
def pack_server(pack):
    with make_server(pack, port=0, quiet=True).start() as server:
        yield server


def test_pack_serves_ranges_and_head(pack_server, pack):
    url = pack_server.url + "models/m.gguf"
    data = (pack / "models" / "m.gguf").read_bytes()
    got = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert got.status_code == 206 and got.content == data[10:20]
    assert got.headers["content-range"] == f"bytes 10-19/{len(data)}"
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(data)
    assert head.headers["accept-ranges"] == "bytes"
    assert httpx.get(url).content == data


def test_backwards_range_is_416_never_a_negative_length(pack_server):
    got = httpx.get(pack_server.url + "models/m.gguf", headers={"Range": "bytes=10-5"})
    assert got.status_code == 416 and got.headers["content-range"] == "bytes */1024"
    assert got.headers["content-length"] == "0"


def test_pack_never_serves_or_lists_outside_its_folder(pack_server):
    for path in ("models/passwd", "etc/passwd", "etc/", "etc", "../../../etc/passwd",
                 "models/x.gguf.partial", "%2e%2e/%2e%2e/etc/passwd"):
        got = httpx.get(pack_server.url + path)
        assert got.status_code == 404, path
        assert "root:" not in got.text
    # a raw request, so no client tidies the dots away first
    with socket.create_connection(pack_server.server_address, timeout=10) as s:
        s.sendall(b"GET /models/../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        raw = b"".join(iter(lambda: s.recv(65536), b""))
    assert raw.startswith(b"HTTP/1.1 404") and b"root:" not in raw
    listing = httpx.get(pack_server.url + "models/").text
    assert "m.gguf" in listing and "passwd" not in listing and ".partial" not in listing
    top = httpx.get(pack_server.url).text
    assert "manifest.json" in top and "etc" not in top.replace("etc/passwd", "")
    assert httpx.get(pack_server.url + "models", follow_redirects=False).status_code == 301


@pytest.fixture
def mirror(tmp_path):
    root = tmp_path / "mirror"
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    hubmirror.add_model(root, "acme/Tiny-GGUF", model)
    os.symlink("/etc/passwd", root / "acme" / "Tiny-GGUF" / "passwd")
    os.symlink("/etc", root / "acme" / "Etc")
    with hubmirror.serve(root) as srv:
        yield srv


def test_add_model_links_or_copies_never_symlinks(mirror):
    served = mirror.root / "acme" / "Tiny-GGUF" / "m.gguf"
    assert served.is_file() and not served.is_symlink()


def test_mirror_never_serves_or_lists_outside_its_folder(mirror):
    base = mirror.url
    assert httpx.get(f"{base}/acme/Tiny-GGUF/resolve/main/passwd").status_code == 404
    tree = httpx.get(f"{base}/api/models/acme/Tiny-GGUF/tree/main").json()
    assert sorted(t["path"] for t in tree) == ["README.md", "m.gguf"]
    assert httpx.get(f"{base}/api/models/acme/Etc/tree/main").status_code == 401
    assert httpx.get(f"{base}/acme/Etc/resolve/main/passwd").status_code == 401
    found = [m["id"] for m in httpx.get(f"{base}/api/models").json()]
    assert found == ["acme/Tiny-GGUF"]


def test_mirror_bad_parameters_get_400_and_ranges_416(mirror):
    got = httpx.get(f"{mirror.url}/api/models?limit=abc")
    assert got.status_code == 400 and got.headers["x-error-code"] == "BadRequest"
    assert "limit" in got.json()["error"]
    url = f"{mirror.url}/acme/Tiny-GGUF/resolve/main/m.gguf"
    bad = httpx.get(url, headers={"Range": "bytes=10-5"})
    assert bad.status_code == 416 and bad.headers["content-length"] == "0"
    assert httpx.get(f"{mirror.url}/api/models?limit=1").json()[0]["id"] == "acme/Tiny-GGUF"


def test_idle_and_slow_clients_do_not_block_and_are_timed_out(pack):
    server = FileServer(pack_app(pack), request_timeout=1.0).start()
    host, port = server.server_address
    idle = []
    try:
        for i in range(20):  # half send nothing, half a header a byte at a time
            s = socket.create_connection((host, port), timeout=30)
            if i % 2:
                s.sendall(b"GET /manifest.json HTTP/1.1\r\nHo")
            idle.append(s)
        got = httpx.get(server.url + "/manifest.json", timeout=10)
        assert got.status_code == 200 and got.json() == {"format": "kit-pack"}
        # every idle connection is closed by the server (recv sees the end)
        for s in idle:
            s.settimeout(30)
            assert s.recv(1024) == b""
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_uvicorn_attributes_the_timeout_relies_on_still_exist():
    from uvicorn.protocols.http.h11_impl import H11Protocol

    names = set(dir(H11Protocol))
    assert {"connection_made", "on_response_complete"} <= names
    proto = fileserver._protocol(1.0)
    import inspect
    source = inspect.getsource(H11Protocol.__init__)
    for attr in ("self.cycle", "self.transport", "self.loop"):
        assert attr in source, attr
    assert issubclass(proto, H11Protocol)


def test_a_stopped_server_frees_its_port(pack):
    server = FileServer(pack_app(pack)).start()
    port = server.server_address[1]
    assert httpx.get(server.url + "/manifest.json").status_code == 200
    server.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the port still answers after stop()")


def test_stopping_cuts_a_running_download_without_a_traceback(pack, caplog):
    big = pack / "models" / "big.gguf"
    big.write_bytes(bytes(64 * 2**20))  # more than the socket buffers hold
    server = make_server(pack, port=0, quiet=True).start()
    with socket.create_connection(server.server_address, timeout=10) as s:
        s.sendall(b"GET /models/big.gguf HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")  # then never reads again
        with caplog.at_level("WARNING"):
            server.stop()
    assert not [r for r in caplog.records if r.exc_info or "Exception" in r.getMessage()]
