"""A small Hugging Face Hub mirror: model files from a folder, over HTTP.

It speaks the part of the Hub's protocol that the huggingface_hub client
uses to search, list and download, so any tool that honours HF_ENDPOINT can
use it: a room downloads from the instructor's laptop instead of the venue's
wifi, and the notebooks can show a real download with no internet.

Folder layout: ROOT/owner/name/FILES, with an optional README.md whose YAML
front matter is the model card (license, gated, tags, downloads, likes).

It runs on the kit's one file server (kit/fileserver.py): Range, HEAD, and
never a file from outside the folder (symlinks are resolved and checked).

>>> add_model(root, "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", gguf_path)
>>> with serve(root) as mirror:               # http://127.0.0.1:PORT
...     os.environ["HF_ENDPOINT"] = mirror.url
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path

from kit.fileserver import FileServer, RequestLog, file_response, inside, read_blocks
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
    """The repository's files: not hidden, and none a symlink leads out of it."""
    out = []
    for p in sorted(repo_dir.rglob("*")):
        rel = p.relative_to(repo_dir).as_posix()
        if (not any(part.startswith(".") for part in rel.split("/"))
                and (real := inside(repo_dir, rel)) is not None and real.is_file()):
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
    """Put a file into the mirror folder as repo_id (hard-linked if it can, else copied).

    Never a symlink: the mirror serves nothing that lies outside its folder.
    """
    source = Path(source)
    repo_dir = Path(root) / repo_id
    repo_dir.mkdir(parents=True, exist_ok=True)
    target = repo_dir / source.name
    if not target.exists():
        try:
            os.link(source.resolve(), target)
        except OSError:  # another drive, or links not allowed
            shutil.copyfile(source, target)
    meta = {"license": license, "gated": gated, "tags": ["gguf"], **front}
    import yaml

    text = f"---\n{yaml.safe_dump(meta, sort_keys=False)}---\n\n" + (
        card or f"# {repo_id}\n\nServed by a kit Hub mirror.\n")
    (repo_dir / "README.md").write_text(text)
    return target


def _error(status: int, code: str, message: str, commit: str | None = None):
    """An error the way the Hub sends it: X-Error-Code says which."""
    from starlette.responses import JSONResponse

    headers = {"X-Error-Code": code, "X-Error-Message": message}
    if commit:
        headers["X-Repo-Commit"] = commit
    return JSONResponse({"error": message}, status, headers)


def _token(request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:] if auth.startswith("Bearer ") else None


def _flag(request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


class Mirror:
    """A Hub mirror of a folder: the app and its state (tokens, throttle, log).

    Tests subclass it and override body() to cut or damage transfers.
    """

    def __init__(self, root, tokens=(), throttle_bps: int | None = None):
        from starlette.applications import Starlette
        from starlette.routing import Route

        self.root = Path(root)
        self.tokens = set(tokens)
        self.throttle_bps = throttle_bps
        self.log: list[dict] = []  # one entry a request, in arrival order
        repo = "/api/models/{owner}/{name}"
        routes = [Route("/api/models", self._search),
                  Route(repo, self._info), Route(repo + "/revision/{rev}", self._info),
                  Route(repo + "/tree/{rev}", self._tree),
                  Route(repo + "/tree/{rev}/{sub:path}", self._tree),
                  Route("/{owner}/{name}/resolve/{rev}/{rel:path}", self._resolve,
                        methods=["GET", "HEAD"]),
                  Route("/{other:path}", self._not_found, methods=["GET", "HEAD"])]
        self.app = RequestLog(Starlette(routes=routes), self.log)
        self.server: FileServer | None = None

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)

    # ---- repositories ----
    def _repo(self, request):
        """(folder, commit) of the repository at the asked revision, or an error."""
        p = request.path_params
        repo_id = f"{p['owner']}/{p['name']}"
        d = inside(self.root, repo_id)
        if p["owner"].startswith(".") or p["name"].startswith(".") or d is None \
                or not d.is_dir():
            # like the Hub: 401 without a token (it might be private), else 404
            return _error(401 if _token(request) is None else 404, "RepoNotFound",
                          "Repository not found"), None
        commit = _commit(d)
        if p.get("rev", "main") not in ("main", commit):
            return _error(404, "RevisionNotFound", f"Invalid rev id: {p['rev']}"), None
        return d, commit

    def _model(self, repo_dir: Path, repo_id: str) -> dict:
        card = _card(repo_dir)
        files = _files(repo_dir)
        tags = list(dict.fromkeys((card.get("tags") or []) + (
            ["gguf"] if any(f.endswith(".gguf") for f in files) else [])))
        if card.get("license"):
            tags.append(f"license:{card['license']}")
        gated = card.get("gated", False)
        mtime = max([repo_dir.stat().st_mtime] + [(repo_dir / f).stat().st_mtime for f in files])
        commit = _commit(repo_dir)
        return {"_id": commit[:24], "id": repo_id, "modelId": repo_id,
                "author": repo_id.split("/")[0], "sha": commit,
                "private": False, "disabled": False,
                "gated": (gated if gated in ("auto", "manual") else
                          ("manual" if gated else False)),
                "downloads": int(card.get("downloads", 0)),
                "likes": int(card.get("likes", 0)), "tags": tags,
                "library_name": "gguf" if "gguf" in tags else None,
                "createdAt": _iso(repo_dir.stat().st_mtime),
                "lastModified": _iso(mtime)}

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

    # ---- routes ----
    async def _not_found(self, request):
        return _error(404, "NotFound", "Not found")

    async def _search(self, request):
        from starlette.responses import JSONResponse

        q = request.query_params
        text, author = q.get("search", "").lower(), q.get("author")
        wanted, sort = set(q.getlist("filter")), q.get("sort", "downloads")
        try:
            limit = int(q.get("limit", "1000"))
        except ValueError:
            return _error(400, "BadRequest", "limit must be a whole number")
        found = []
        for repo_dir in sorted(self.root.glob("[!.]*/[!.]*")):
            repo_id = f"{repo_dir.parent.name}/{repo_dir.name}"
            real = inside(self.root, repo_id)
            if real is None or not real.is_dir() or text not in repo_id.lower() or (
                    author and repo_dir.parent.name != author):
                continue
            model = self._model(repo_dir, repo_id)
            if not wanted - set(model["tags"]) - {model["library_name"]}:
                found.append(model)
        if sort in ("downloads", "likes", "lastModified", "createdAt"):
            found.sort(key=lambda m: m[sort], reverse=True)
        return JSONResponse(found[:max(limit, 0)])

    async def _info(self, request):
        from starlette.responses import JSONResponse

        repo_dir, commit = self._repo(request)
        if commit is None:
            return repo_dir
        data = self._model(repo_dir, "{owner}/{name}".format(**request.path_params))
        card = _card(repo_dir)
        data["cardData"] = {k: v for k, v in card.items() if k not in ("downloads", "likes")}
        blobs = _flag(request, "blobs")
        data["siblings"] = [self._entry(repo_dir, rel, sibling=True) if blobs
                            else {"rfilename": rel} for rel in _files(repo_dir)]
        return JSONResponse(data)

    async def _tree(self, request):
        from starlette.responses import JSONResponse

        repo_dir, commit = self._repo(request)
        if commit is None:
            return repo_dir
        sub = request.path_params.get("sub", "").strip("/")
        prefix, recursive = (sub + "/" if sub else ""), _flag(request, "recursive")
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
        return JSONResponse(out)

    async def _resolve(self, request):
        repo_dir, commit = self._repo(request)
        if commit is None:
            return repo_dir
        rel = request.path_params["rel"]
        repo_id = "{owner}/{name}".format(**request.path_params)
        if _card(repo_dir).get("gated") and rel != "README.md":
            token = _token(request)
            if token is None:
                return _error(401, "GatedRepo", f"Access to model {repo_id} is restricted. "
                              "You must be authenticated to access it.", commit)
            if token not in self.tokens:
                return _error(403, "GatedRepo", f"Access to model {repo_id} is restricted "
                              "and you are not in the authorized list.", commit)
        if rel not in _files(repo_dir):
            return _error(404, "EntryNotFound", f"{rel} does not exist on main", commit)
        path = repo_dir / rel
        etag, size = file_etag(path), path.stat().st_size
        headers = {"ETag": f'"{etag}"', "X-Repo-Commit": commit}
        if _is_lfs(path, size):
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(size)})
        return file_response(request, path, headers, "application/octet-stream",
                             lambda p, offset, count: self.body(request, p, offset, count))

    def body(self, request, path: Path, offset: int, count: int):
        """The bytes of a download, as blocks (at most throttle_bps bytes/s)."""
        return read_blocks(path, offset, count, self.throttle_bps)

    # ---- serving ----
    @property
    def url(self) -> str:
        return self.server.url

    @property
    def server_address(self):
        return self.server.server_address

    def start(self, host: str = "127.0.0.1", port: int = 0) -> "Mirror":
        self.bind(host, port).start()
        return self

    def bind(self, host: str = "127.0.0.1", port: int = 0) -> FileServer:
        self.server = FileServer(self, host, port, name="kit-hubmirror")
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def serve(root, host: str = "127.0.0.1", port: int = 0, tokens=(),
          throttle_bps: int | None = None, cls=Mirror) -> Mirror:
    """Start a mirror of root in a background thread; .url is its address."""
    return cls(root, tokens, throttle_bps).start(host, port)
