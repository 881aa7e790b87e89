"""Downloading one file from the Hub: resumable, disk-checked, sha256-verified.

`kit pull` and notebook 02 call download(). The bytes go to `blobs/<sha256>.incomplete`
in the shared Hugging Face cache (a killed download continues from there),
are hashed while they arrive, and get their real name only once verified;
then the huggingface_hub client makes the cache entry, as for any download.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kit.models import hub
from kit.errors import ChecksumMismatch, DownloadFailed, HubOffline, NotEnoughDisk
from kit.util import feed_file, free_disk_bytes, human_size, sha256_file

@dataclass(frozen=True)
class Download:
    path: Path  # the file in the Hugging Face cache (snapshots/<commit>/<file>)
    sha256: str | None  # verified against the Hub (None: the Hub gave no sha256)
    size: int
    commit: str | None
    transferred: int  # bytes that came over the network this time
    from_cache: bool


class _HashingWriter:
    """A file wrapper that hashes what http_get writes through it.

    The hashing runs in a second thread (hashlib lets go of the GIL), so it
    overlaps with receiving the next block instead of adding to the time.
    """

    def __init__(self, f, h):
        self.f, self.h, self.written = f, h, 0
        self._start()

    def _start(self):
        import queue
        import threading

        self._q = queue.Queue(maxsize=4)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while (block := self._q.get()) is not None:
            if self.h is not None:
                self.h.update(block)

    def close(self):
        """Wait for the hashing to catch up; then digest() is final."""
        if self._t.is_alive():
            self._q.put(None)
            self._t.join()

    def digest(self) -> str | None:
        self.close()
        return self.h.hexdigest() if self.h is not None else None

    def write(self, block):
        self._q.put(bytes(block))
        self.written += len(block)
        return self.f.write(block)

    def tell(self):
        return self.f.tell()

    def seek(self, *args):
        return self.f.seek(*args)

    def truncate(self, *args):
        # the server ignored the Range request and sends everything again
        self.close()
        out = self.f.truncate(*args)
        self.h = hashlib.sha256() if self.f.tell() == 0 else None
        self._start()
        return out


def _quiet_tqdm():
    from tqdm.auto import tqdm

    class Quiet(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
    return Quiet


def _from_cache(hf, repo_id, filename, revision, what) -> Download:
    try:
        path = Path(hf.hf_hub_download(repo_id, filename, revision=revision,
                                       cache_dir=hub.cache_dir(), local_files_only=True))
    except Exception as exc:
        raise hub._translate(exc, what, repo_id) from None
    blob = path.resolve().name
    return Download(path, blob if hub._SHA256.match(blob) else None,
                    path.stat().st_size, path.parent.name, 0, True)


def download(repo_id: str, filename: str, revision: str = "main", *,
             token=None, progress: bool = True, tqdm_class=None,
             quiet: bool = False) -> Download:
    """Download one file into the shared cache: resumable, checked, sha256-verified.

    An interrupted download leaves only `blobs/<sha256>.incomplete` in the
    cache (never a file the kit lists); the next call continues from there.
    """
    from huggingface_hub.file_download import repo_folder_name

    hf = hub._client()
    say = (lambda *a: None) if quiet else print
    what = f"{filename} from {repo_id}"
    if hub.offline():
        return _from_cache(hf, repo_id, filename, revision, what)
    url = hf.hf_hub_url(repo_id, filename, revision=revision, endpoint=hub.endpoint())
    try:
        meta = hf.get_hf_file_metadata(url, token=token, endpoint=hub.endpoint())
    except Exception as exc:
        err = hub._translate(exc, what, repo_id, token)
        if isinstance(err, HubOffline):  # unreachable: the cache may have it
            return _from_cache(hf, repo_id, filename, revision, what)
        raise err from None
    if not meta.etag or not meta.commit_hash or meta.size is None:
        raise DownloadFailed(what, f"{hub.endpoint()} did not answer like a Hub "
                             "(no ETag, X-Repo-Commit or size); check HF_ENDPOINT")
    storage = hub.cache_dir() / repo_folder_name(repo_id=repo_id, repo_type="model")
    pointer = storage / "snapshots" / meta.commit_hash / filename
    expected = meta.etag if hub._SHA256.match(meta.etag) else None
    if pointer.is_file() and pointer.stat().st_size == meta.size:
        return Download(pointer, expected, meta.size, meta.commit_hash, 0, True)

    blob = storage / "blobs" / meta.etag
    transferred = 0
    if not blob.is_file():
        transferred = _fetch(meta, blob, repo_id, filename, expected, token,
                             tqdm_class or (None if progress else _quiet_tqdm()), say)
    # The client makes the cache entry (refs/, snapshots/ link) from the blob.
    try:
        path = Path(hf.hf_hub_download(repo_id, filename, revision=revision,
                                       cache_dir=hub.cache_dir(), endpoint=hub.endpoint(),
                                       token=token))
    except Exception as exc:
        raise hub._translate(exc, what, repo_id, token) from None
    return Download(path, expected, meta.size, meta.commit_hash, transferred, False)


def _fetch(meta, blob: Path, repo_id, filename, expected, token, tqdm_class,
           say) -> int:
    """Bytes into blob via blob.incomplete (resumed if present); returns bytes sent."""
    from filelock import FileLock
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers


    what = f"{filename} from {repo_id}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    partial = blob.with_name(blob.name + ".incomplete")
    locks = blob.parents[2] / ".locks" / blob.parents[1].name
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{blob.name}.kit.lock")):
        have = partial.stat().st_size if partial.exists() else 0
        if have > meta.size:  # not ours to continue: start again
            partial.unlink()
            have = 0
        free = free_disk_bytes(blob.parent)
        if free < meta.size - have:
            raise NotEnoughDisk(what, meta.size - have, free, blob.parent)
        h = feed_file(hashlib.sha256(), partial) if have else hashlib.sha256()
        say(f"Downloading {what} ({human_size(meta.size)})"
            + (f", continuing from {human_size(have)}" if have else ""))
        headers = build_hf_headers(token=token)
        headers["Accept-Encoding"] = "identity"
        if urlsplit(meta.location).netloc != urlsplit(hub.endpoint()).netloc:
            headers.pop("authorization", None)  # a CDN: the token stays home
        try:
            with open(partial, "ab") as f:
                out = _HashingWriter(f, h)
                try:
                    http_get(meta.location, out, resume_size=have, headers=headers,
                             expected_size=meta.size,
                             displayed_filename=Path(filename).name,
                             tqdm_class=tqdm_class)
                finally:
                    out.close()
        except Exception as exc:
            raise hub._translate(exc, what, repo_id, token) from None
        digest = out.digest()
        if expected:
            if digest is None:
                digest = sha256_file(partial)
            if digest != expected:
                partial.unlink(missing_ok=True)
                raise ChecksumMismatch(what, digest, expected)
        os.replace(partial, blob)  # only a complete, verified file gets the name
    say(f"Verified {what}: sha256 {digest[:12]}..." if expected and digest else
        f"Downloaded {what} (the Hub gave no sha256 for it; size checked)")
    return out.written
