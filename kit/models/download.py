"""Downloading one file from the Hub: resumable, disk-checked, sha256-verified.

`kit pull` and notebook 02 call download(). The bytes go to `blobs/<sha256>.incomplete`
in the shared Hugging Face cache (a killed download continues from there),
are hashed while they arrive, and get their real name only once verified;
then the huggingface_hub client makes the cache entry, as for any download.
Only huggingface_hub's public API is used (metadata, headers, its HTTP
session and error translation); the client itself does not continue a
download another process began, which a room's wifi makes worth having.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kit.errors import ChecksumMismatch, DownloadFailed, HubOffline, NotEnoughDisk
from kit.models import hub
from kit.util import feed_file, free_disk_bytes, human_size

@dataclass(frozen=True)
class Download:
    path: Path  # the file in the Hugging Face cache (snapshots/<commit>/<file>)
    sha256: str | None  # verified against the Hub (None: the Hub gave no sha256)
    size: int
    commit: str | None
    transferred: int  # bytes that came over the network this time
    from_cache: bool


RETRIES = 5  # a connection cut mid-file is continued this many times


def _bar_class(progress: bool, tqdm_class):
    from tqdm.auto import tqdm

    if tqdm_class is not None:
        return tqdm_class
    if progress:
        return tqdm

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
        raise hub.translate_error(exc, what, repo_id) from None
    blob = path.resolve().name
    return Download(path, blob if hub.SHA256.match(blob) else None,
                    path.stat().st_size, path.parent.name, 0, True)


def download(repo_id: str, filename: str, revision: str = "main", *,
             token=None, progress: bool = True, tqdm_class=None,
             quiet: bool = False) -> Download:
    """Download one file into the shared cache: resumable, checked, sha256-verified.

    An interrupted download leaves only `blobs/<sha256>.incomplete` in the
    cache (never a file the kit lists); the next call continues from there.
    """
    hf = hub.client()
    say = (lambda *a: None) if quiet else print
    what = f"{filename} from {repo_id}"
    if hub.offline() or hub.unresolvable():  # no lookup: the cache may have it
        return _from_cache(hf, repo_id, filename, revision, what)
    url = hf.hf_hub_url(repo_id, filename, revision=revision, endpoint=hub.endpoint())
    try:
        meta = hf.get_hf_file_metadata(url, token=token, endpoint=hub.endpoint())
    except Exception as exc:
        err = hub.translate_error(exc, what, repo_id, token)
        if isinstance(err, HubOffline):  # unreachable: the cache may have it
            return _from_cache(hf, repo_id, filename, revision, what)
        raise err from None
    if not meta.etag or not meta.commit_hash or meta.size is None:
        raise DownloadFailed(what, f"{hub.endpoint()} did not answer like a Hub "
                             "(no ETag, X-Repo-Commit or size); check HF_ENDPOINT")
    # the cache's documented layout: models--OWNER--NAME/{blobs,refs,snapshots}
    storage = hub.cache_dir() / f"models--{repo_id.replace('/', '--')}"
    pointer = storage / "snapshots" / meta.commit_hash / filename
    expected = meta.etag if hub.SHA256.match(meta.etag) else None
    if pointer.is_file() and pointer.stat().st_size == meta.size:
        return Download(pointer, expected, meta.size, meta.commit_hash, 0, True)

    blob = storage / "blobs" / meta.etag
    transferred = 0
    if not blob.is_file():
        transferred = _fetch(meta, blob, repo_id, filename, expected, token,
                             _bar_class(progress, tqdm_class), say)
    # The client makes the cache entry (refs/, snapshots/ link) from the blob.
    try:
        path = Path(hf.hf_hub_download(repo_id, filename, revision=revision,
                                       cache_dir=hub.cache_dir(), endpoint=hub.endpoint(),
                                       token=token))
    except Exception as exc:
        raise hub.translate_error(exc, what, repo_id, token) from None
    return Download(path, expected, meta.size, meta.commit_hash, transferred, False)


def _fetch(meta, blob: Path, repo_id, filename, expected, token, bar_class,
           say) -> int:
    """Bytes into blob via blob.incomplete (resumed if present); returns bytes sent."""
    from filelock import FileLock
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
        say(f"Downloading {what} ({human_size(meta.size)})"
            + (f", continuing from {human_size(have)}" if have else ""))
        headers = build_hf_headers(token=token)
        headers["Accept-Encoding"] = "identity"
        if urlsplit(meta.location).netloc != urlsplit(hub.endpoint()).netloc:
            headers.pop("authorization", None)  # a CDN: the token stays home
        try:
            with bar_class(total=meta.size, initial=have, unit="B", unit_scale=True,
                           unit_divisor=1000, desc=Path(filename).name) as bar:
                digest, sent = _get(meta.location, partial, headers, bar, meta.size)
        except Exception as exc:
            raise hub.translate_error(exc, what, repo_id, token) from None
        if partial.stat().st_size != meta.size:
            raise DownloadFailed(what, f"the server sent {partial.stat().st_size:,} of "
                                 f"{meta.size:,} bytes")
        if expected and digest != expected:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatch(what, digest, expected)
        os.replace(partial, blob)  # only a complete, verified file gets the name
    say(f"Verified {what}: sha256 {digest[:12]}..." if expected else
        f"Downloaded {what} (the Hub gave no sha256 for it; size checked)")
    return sent


def _get(url: str, partial: Path, headers: dict, bar, size: int) -> tuple[str, int]:
    """GET url into partial, continuing after what it holds; (sha256, bytes sent).

    The bytes are hashed as they arrive; a connection cut midway is asked
    again from where it stopped (a Range request), RETRIES times at most.
    """
    import httpx2
    from huggingface_hub.utils import get_session, hf_raise_for_status

    have = partial.stat().st_size if partial.exists() else 0
    h = feed_file(hashlib.sha256(), partial) if have else hashlib.sha256()
    sent, tries = 0, 0
    with open(partial, "ab") as f:
        while have < size:
            asked = {**headers, **({"Range": f"bytes={have}-"} if have else {})}
            try:
                with get_session().stream("GET", url, headers=asked, follow_redirects=True,
                                          timeout=30) as r:
                    if r.status_code >= 400:
                        r.read()  # the error's body names the problem
                        hf_raise_for_status(r)
                    if have and r.status_code != 206:  # Range ignored: start over
                        f.truncate(0)
                        h, have = hashlib.sha256(), 0
                        bar.reset(total=size)
                    for block in r.iter_bytes(1 << 20):
                        f.write(block)
                        h.update(block)
                        have, sent = have + len(block), sent + len(block)
                        bar.update(len(block))
                    if have < size:
                        raise httpx2.RemoteProtocolError("the server stopped early")
            except httpx2.TransportError:
                tries += 1
                if tries >= RETRIES:
                    raise
                f.flush()
    return h.hexdigest(), sent
