"""A small Hugging Face Hub mirror: model files from a folder, over HTTP.

It speaks the part of the Hub's protocol that the huggingface_hub client
uses to search, list and download, so any tool that honours HF_ENDPOINT can
use it: a room downloads from the instructor's laptop instead of the venue's
wifi, and the notebooks can show a real download with no internet.

Folder layout: ROOT/owner/name/FILES, with an optional README.md whose YAML
front matter is the model card (license, gated, tags, downloads, likes).

>>> add_model(root, "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", gguf_path)
>>> with serve(root) as mirror:               # http://127.0.0.1:PORT
...     os.environ["HF_ENDPOINT"] = mirror.url
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from kit.util import feed_file

LFS_EXTS = {".gguf", ".safetensors", ".bin", ".pt", ".pth", ".onnx", ".zip"}
LFS_MIN = 1 << 20  # bigger files are "LFS" files: their ETag is the sha256
_HASHES: dict = {}  # (path, size, mtime_ns) -> hex digest
_LOCK = threading.Lock()


def _is_lfs(path: Path, size: int) -> bool:
    return size >= LFS_MIN or path.suffix.lower() in LFS_EXTS


def file_etag(path: Path) -> str:
    """sha256 for large files (as the Hub gives for LFS files), git blob sha1 else."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _HASHES:
            return _HASHES[key]
    if _is_lfs(path, st.st_size):
        h = hashlib.sha256()
    else:
        h = hashlib.sha1(f"blob {st.st_size}\0".encode())
    feed_file(h, path)
    with _LOCK:
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def _card(repo_dir: Path) -> dict:
    readme = repo_dir / "README.md"
    if not readme.is_file():
        return {}
    m = re.match(r"^---\s*\n(.*?)\n---\s*\n", readme.read_text(errors="replace"), re.S)
    if not m:
        return {}
    import yaml  # a dependency of huggingface_hub

    try:
        data = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _files(repo_dir: Path) -> list[str]:
    out = []
    for p in sorted(repo_dir.rglob("*")):
        rel = p.relative_to(repo_dir).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            out.append(rel)
    return out


def _commit(repo_dir: Path) -> str:
    """A stable 40-hex 'commit': changes whenever a file changes."""
    h = hashlib.sha1()
    for rel in _files(repo_dir):
        st = (repo_dir / rel).stat()
        h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def add_model(root, repo_id: str, source, license: str = "apache-2.0",
              gated: bool = False, card: str = "", **front) -> Path:
    """Put a file into the mirror folder as repo_id (linked, not copied, if it can)."""
    source = Path(source)
    repo_dir = Path(root) / repo_id
    repo_dir.mkdir(parents=True, exist_ok=True)
    target = repo_dir / source.name
    if not target.exists():
        try:
            os.link(source.resolve(), target)
        except OSError:
            try:
                target.symlink_to(source.resolve())
            except OSError:
                shutil.copyfile(source, target)
    meta = {"license": license, "gated": gated, "tags": ["gguf"], **front}
    import yaml

    text = f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n" + (
        card or f"# {repo_id}\n\nServed by a kit Hub mirror.\n")
    (repo_dir / "README.md").write_text(text)
    return target


class MirrorHandler(BaseHTTPRequestHandler):
    """Answers like the Hub; tests subclass it to cut or damage transfers."""

    protocol_version = "HTTP/1.1"
    server_version = "kit-hubmirror"

    # -- plumbing --
    def log_message(self, *args):  # quiet; requests go to server.log instead
        pass

    def _record(self, status: int, sent: int = 0):
        self._entry_log.update(status=status, sent=sent)

    def _json(self, data, status: int = 200, headers: dict | None = None):
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._record(status, len(body))

    def _error(self, status: int, code: str, message: str, commit: str | None = None):
        headers = {"X-Error-Code": code, "X-Error-Message": message}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._json({"error": message}, status, headers)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else None

    def _repo(self, repo_id: str) -> Path | None:
        if repo_id.count("/") != 1 or ".." in repo_id or repo_id.startswith("."):
            return None
        d = Path(self.server.root) / repo_id
        return d if d.is_dir() else None

    def _open(self, repo_id: str, rev: str):
        """(folder, commit) of a repository at rev, or (None, None) once answered."""
        repo_dir = self._repo(repo_id)
        if repo_dir is None:
            self._no_repo()
            return None, None
        commit = _commit(repo_dir)
        if rev not in ("main", commit):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None, None
        return repo_dir, commit

    def _no_repo(self):
        # Like the Hub: 401 without a token (it might be private), else 404.
        self._error(401 if self._token() is None else 404, "RepoNotFound",
                    "Repository not found")

    # -- routes --
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        # logged as it arrives, so a client never sees an answer before its entry
        self._entry_log = {"method": self.command, "path": self.path,
                           "range": self.headers.get("Range"), "status": None,
                           "sent": 0}
        self.server.log.append(self._entry_log)
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        query = parse_qs(url.query)
        try:
            if parts[:2] == ["api", "models"] and len(parts) == 2:
                return self._search(query)
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                repo_id = "/".join(parts[2:4])
                rest = parts[4:]
                if not rest:
                    return self._info(repo_id, "main", query)
                if rest[0] == "revision" and len(rest) == 2:
                    return self._info(repo_id, rest[1], query)
                if rest[0] == "tree" and len(rest) >= 2:
                    return self._tree(repo_id, rest[1], "/".join(rest[2:]), query)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
            self._error(404, "NotFound", "Not found")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _model(self, repo_dir: Path, repo_id: str) -> dict:
        card = _card(repo_dir)
        tags = list(dict.fromkeys((card.get("tags") or []) + (
            ["gguf"] if any(f.endswith(".gguf") for f in _files(repo_dir)) else [])))
        if card.get("license"):
            tags.append(f"license:{card['license']}")
        gated = card.get("gated", False)
        mtime = max([repo_dir.stat().st_mtime] +
                    [(repo_dir / f).stat().st_mtime for f in _files(repo_dir)])
        return {"_id": _commit(repo_dir)[:24], "id": repo_id, "modelId": repo_id,
                "author": repo_id.split("/")[0], "sha": _commit(repo_dir),
                "private": False, "disabled": False,
                "gated": (gated if gated in ("auto", "manual") else
                          ("manual" if gated else False)),
                "downloads": int(card.get("downloads", 0)),
                "likes": int(card.get("likes", 0)), "tags": tags,
                "library_name": "gguf" if "gguf" in tags else None,
                "createdAt": _iso(repo_dir.stat().st_mtime),
                "lastModified": _iso(mtime)}

    def _search(self, query):
        text = (query.get("search") or [""])[0].lower()
        author = (query.get("author") or [None])[0]
        wanted = set(query.get("filter") or [])
        sort = (query.get("sort") or ["downloads"])[0]
        limit = int((query.get("limit") or ["1000"])[0])
        root = Path(self.server.root)
        found = []
        for repo_dir in sorted(root.glob("[!.]*/[!.]*")):
            repo_id = f"{repo_dir.parent.name}/{repo_dir.name}"
            if not repo_dir.is_dir() or text not in repo_id.lower() or (
                    author and repo_dir.parent.name != author):
                continue
            model = self._model(repo_dir, repo_id)
            if not wanted - set(model["tags"]) - {model["library_name"]}:
                found.append(model)
        if sort in ("downloads", "likes", "lastModified", "createdAt"):
            found.sort(key=lambda m: m[sort], reverse=True)
        self._json(found[:limit])

    def _info(self, repo_id, rev, query):
        repo_dir, commit = self._open(repo_id, rev)
        if repo_dir is None:
            return
        data = self._model(repo_dir, repo_id)
        card = _card(repo_dir)
        data["cardData"] = {k: v for k, v in card.items() if k not in ("downloads", "likes")}
        blobs = (query.get("blobs") or ["false"])[0].lower() == "true"
        data["siblings"] = [self._entry(repo_dir, rel, sibling=True) if blobs
                            else {"rfilename": rel} for rel in _files(repo_dir)]
        self._json(data)

    def _entry(self, repo_dir: Path, rel: str, sibling: bool = False) -> dict:
        path = repo_dir / rel
        size = path.stat().st_size
        etag = file_etag(path)
        entry = {"type": "file", "path": rel, "size": size, "oid": etag}
        if _is_lfs(path, size):
            pointer = (f"version https://git-lfs.github.com/spec/v1\n"
                       f"oid sha256:{etag}\nsize {size}\n")
            entry["oid"] = hashlib.sha1(f"blob {len(pointer)}\0{pointer}".encode()).hexdigest()
            entry["lfs"] = {"oid": etag, "size": size, "pointerSize": len(pointer)}
        if sibling:
            lfs = entry.get("lfs")
            return {"rfilename": rel, "size": size, "blobId": entry["oid"],
                    **({"lfs": {"sha256": lfs["oid"], "size": size,
                                "pointerSize": lfs["pointerSize"]}} if lfs else {})}
        return entry

    def _tree(self, repo_id, rev, sub, query):
        repo_dir, commit = self._open(repo_id, rev)
        if repo_dir is None:
            return
        recursive = (query.get("recursive") or ["false"])[0].lower() == "true"
        prefix = sub.strip("/") + "/" if sub.strip("/") else ""
        out, dirs = [], set()
        for rel in _files(repo_dir):
            if not rel.startswith(prefix):
                continue
            tail = rel[len(prefix):]
            if "/" in tail and not recursive:
                d = prefix + tail.split("/")[0]
                if d not in dirs:
                    dirs.add(d)
                    out.append({"type": "directory", "path": d, "size": 0,
                                "oid": hashlib.sha1(d.encode()).hexdigest()})
                continue
            out.append(self._entry(repo_dir, rel))
        self._json(out)

    def _resolve(self, repo_id, rev, rel):
        repo_dir, commit = self._open(repo_id, rev)
        if repo_dir is None:
            return
        card = _card(repo_dir)
        if card.get("gated") and rel != "README.md":
            token = self._token()
            if token is None:
                return self._error(401, "GatedRepo", f"Access to model {repo_id} is "
                                   "restricted. You must be authenticated to access it.",
                                   commit)
            if token not in self.server.tokens:
                return self._error(403, "GatedRepo", f"Access to model {repo_id} is "
                                   "restricted and you are not in the authorized list.",
                                   commit)
        path = repo_dir / rel
        if rel not in _files(repo_dir):
            return self._error(404, "EntryNotFound", f"{rel} does not exist on main", commit)
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if rng:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if not m or int(m.group(1)) >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return self._record(416)
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            status = 206
        etag = file_etag(path)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", commit)
        if _is_lfs(path, size):
            self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        sent = 0
        if self.command == "GET":
            sent = self.send_body(path, start, end - start + 1)
        self._record(status, sent)

    def send_body(self, path: Path, offset: int, count: int) -> int:
        """Send count bytes of path from offset; returns bytes sent."""
        rate = self.server.throttle_bps
        with open(path, "rb") as f:
            if not rate:
                return self.connection.sendfile(f, offset, count)
            f.seek(offset)
            sent, chunk = 0, 64 * 1024
            t0 = time.monotonic()
            while sent < count:
                block = f.read(min(chunk, count - sent))
                self.wfile.write(block)
                sent += len(block)
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
            return sent


class MirrorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root, host="127.0.0.1", port=0, tokens=(),
                 throttle_bps=None, handler=MirrorHandler):
        super().__init__((host, port), handler)
        self.root = Path(root)
        self.tokens = set(tokens)
        self.throttle_bps = throttle_bps
        self.log: list[dict] = []
        self._thread = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "MirrorServer":
        self._thread = threading.Thread(target=self.serve_forever, daemon=True,
                                        name="kit-hubmirror")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def serve(root, host: str = "127.0.0.1", port: int = 0, tokens=(),
          throttle_bps: int | None = None, handler=MirrorHandler) -> MirrorServer:
    """Start a mirror of root in a background thread; .url is its address."""
    return MirrorServer(root, host, port, tokens, throttle_bps, handler).start()
