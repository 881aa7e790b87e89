"""Find GGUF models on the Hugging Face Hub and download them, verified.

Everything goes through the real huggingface_hub client. Settings are read
when called: HF_ENDPOINT (a mirror), HF_HOME / HF_HUB_CACHE (the shared
cache other tools use too), HF_HUB_OFFLINE and HF_TOKEN (never shown).

>>> search("smollm2")[0].repo_id              # GGUF repositories, most used first
>>> print(inspect("owner/Some-Model-GGUF").table())  # files, sizes, fit here
>>> download("owner/Some-Model-GGUF", "some-model-Q4_K_M.gguf").path
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from kit.models.catalog import QUANT_BITS, by_file, parse_quant, shard_of, typical_shape
from kit.errors import (BadParameter, DownloadFailed, HubAccessDenied, HubNotFound,
                        HubOffline, KitError)
from kit.fit import available_memory, estimate_numbers
from kit.util import hf_cache_dir, hf_endpoint, hf_offline, human_size, text_table

SHA256 = re.compile(r"^[0-9a-f]{64}$")
# read when called, as the client reads them (kit.util is their one home)
endpoint, offline, cache_dir = hf_endpoint, hf_offline, hf_cache_dir


def client():
    """huggingface_hub, with its offline switch matched to the environment now.

    The client reads HF_HUB_OFFLINE once, at import; the kit reads it at each
    call (so a notebook can switch), and tells the client.
    """
    import huggingface_hub
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = offline()
    return huggingface_hub


def unresolvable(timeout: float = 3.0) -> str | None:
    """Why the Hub's host name cannot be looked up now, or None if it can.

    Offline, huggingface_hub retries a failed lookup five times (about 25 s,
    one warning line each); a lookup that fails says "offline" at once.
    """
    import socket
    import threading
    from urllib.parse import urlsplit

    host = urlsplit(endpoint()).hostname
    if not host:
        return None
    result: dict = {}

    def lookup():
        try:
            socket.getaddrinfo(host, None)
            result["ok"] = True
        except OSError as exc:  # gaierror: no DNS, no network, a wrong name
            result["why"] = f"the name {host} cannot be looked up ({exc.strerror or exc})"
    worker = threading.Thread(target=lookup, daemon=True)  # a lookup can hang
    worker.start()
    worker.join(timeout)
    if result.get("ok"):
        return None
    return result.get("why", f"looking up {host} took more than {timeout:g} s")


def _has_token(token) -> bool:
    if isinstance(token, str):
        return bool(token)
    return client().get_token() is not None


def translate_error(exc: Exception, what: str, repo_id: str, token=None) -> KitError:
    """A huggingface_hub or network error as a kit error that says what to do."""
    import httpx2
    from huggingface_hub import errors as e

    if isinstance(exc, KitError):
        return exc
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, e.GatedRepoError) or (
            isinstance(exc, e.HfHubHTTPError) and status == 403):
        return HubAccessDenied(repo_id, status or 401, _has_token(token))
    if isinstance(exc, e.RepositoryNotFoundError):
        return HubNotFound(f"the repository {repo_id} at {endpoint()}",
                           "Check the name (owner/name, as in its web address); "
                           "a private repository needs an access token "
                           "(`hf auth login`). Find models with `kit search TEXT`.")
    if isinstance(exc, e.RevisionNotFoundError):
        return HubNotFound(f"that revision of {repo_id}",
                           "Leave the revision out to use the main branch.")
    if isinstance(exc, e.RemoteEntryNotFoundError):
        return HubNotFound(what,
                           f"See its files with `kit search {repo_id}` or "
                           "kit.models.hub.inspect(repo_id).")
    if isinstance(exc, (e.OfflineModeIsEnabled, e.LocalEntryNotFoundError)):
        return HubOffline(what, "offline mode is on (HF_HUB_OFFLINE) and it is "
                                "not in the cache" if offline() else
                                f"{endpoint()} cannot be reached and it is not in the cache")
    if isinstance(exc, (httpx2.ConnectError, httpx2.TimeoutException)):
        return HubOffline(what, f"{endpoint()} cannot be reached ({type(exc).__name__})")
    if isinstance(exc, (httpx2.HTTPError, OSError)):
        return DownloadFailed(what, f"{type(exc).__name__}"
                              + (f", HTTP {status}" if status else ""))
    return DownloadFailed(what, type(exc).__name__)


# ---- search and inspect ------------------------------------------------------

@dataclass(frozen=True)
class SearchHit:
    repo_id: str
    downloads: int | None
    likes: int | None
    gated: bool
    license: str | None

    def __str__(self) -> str:
        gate = " (gated)" if self.gated else ""
        return (f"{self.repo_id}{gate}  downloads {self.downloads or 0:,}  "
                f"likes {self.likes or 0:,}  licence {self.license or '?'}")


def _license(tags, card=None) -> str | None:
    lic = getattr(card, "license", None) if card is not None else None
    if lic:
        return lic if isinstance(lic, str) else ", ".join(lic)
    for t in tags or []:
        if t.startswith("license:"):
            return t.split(":", 1)[1]
    return None


def search(text: str, sort: str = "downloads", limit: int = 10) -> list[SearchHit]:
    """GGUF repositories whose name contains text, most downloaded (or liked) first."""
    if sort not in ("downloads", "likes"):
        raise BadParameter("sort", sort, "'downloads' or 'likes'")
    hf = client()
    if offline():
        raise HubOffline(f"search results for {text!r}", "offline mode is on "
                         "(HF_HUB_OFFLINE)")
    why = unresolvable()
    if why:
        raise HubOffline(f"search results for {text!r}", why)
    try:
        found = hf.HfApi(endpoint=endpoint()).list_models(
            search=text, filter="gguf", sort=sort, limit=limit)
        return [SearchHit(m.id, m.downloads, m.likes, bool(m.gated),
                          _license(m.tags)) for m in found]
    except Exception as exc:  # translated: the message says what to do
        raise translate_error(exc, f"search results for {text!r}", text) from None


def fit_verdict(size: int, shape: tuple | None = None, n_ctx: int = 2048,
                quant: str | None = None, ram_available: int | None = None):
    """(FitEstimate, approximate?) for a file of `size` bytes, before downloading.

    Without the model's shape (layers, KV heads, head size) the KV cache is
    estimated from the catalog model of the nearest size.
    """
    approximate = shape is None
    if shape is None:
        params = size * 8 / QUANT_BITS.get(quant or "", 4.9)
        shape = typical_shape(params)
    if ram_available is None:
        ram_available = available_memory()[0]
    return estimate_numbers(size, *shape, n_ctx, ram_available=ram_available), approximate


@dataclass(frozen=True)
class HubFile:
    name: str
    size: int
    quantization: str | None
    sha256: str | None
    shard: tuple | None = None
    fits: bool | None = None
    needs: int | None = None  # bytes of memory, weights + KV cache + overhead
    approximate: bool = True


@dataclass(frozen=True)
class RepoReport:
    repo_id: str
    license: str | None
    gated: bool
    downloads: int | None
    files: list = field(default_factory=list)

    def table(self) -> str:
        """The GGUF files as text: name, size, quantization, memory, fits."""
        head = (f"{self.repo_id}  licence {self.license or 'unknown'}  "
                f"{'gated: accept the licence on its page first' if self.gated else 'not gated'}")
        rows = [{"file": f.name, "size": human_size(f.size),
                 "quant": f.quantization or "?",
                 "needs": ("~" if f.approximate else "") + human_size(f.needs or 0),
                 "fits": "?" if f.fits is None else ("fits" if f.fits else "too big")}
                for f in self.files]
        return head + "\n" + text_table(rows, right=("size", "needs"), indent="  ")


def files(repo_id: str, revision: str = "main") -> list[HubFile]:
    """The GGUF files of a repository: name, size, quantization, sha256."""
    hf = client()
    why = None if offline() else unresolvable()
    if why:
        raise HubOffline(f"the file list of {repo_id}", why)
    try:
        tree = hf.HfApi(endpoint=endpoint()).list_repo_tree(
            repo_id, revision=revision, recursive=True)
        out = []
        for item in tree:
            if not getattr(item, "size", None) or not item.path.lower().endswith(".gguf"):
                continue
            sha = item.lfs.sha256 if getattr(item, "lfs", None) else None
            out.append(HubFile(item.path, item.size, parse_quant(item.path), sha,
                               shard_of(item.path)))
        return sorted(out, key=lambda f: (f.size, f.name))
    except Exception as exc:
        raise translate_error(exc, f"the file list of {repo_id}", repo_id) from None


def inspect(repo_id: str, revision: str = "main", n_ctx: int = 2048,
            ram_available: int | None = None) -> RepoReport:
    """Licence, gating and GGUF files of a repository, with a fit verdict each."""
    hf = client()
    try:
        info = hf.HfApi(endpoint=endpoint()).model_info(repo_id, revision=revision)
    except Exception as exc:
        raise translate_error(exc, f"the model card of {repo_id}", repo_id) from None
    rated = []
    for f in files(repo_id, revision):
        known = by_file(repo_id, f.name)
        shape = (known["n_layers"], known["n_kv_heads"], known["head_dim"]) if known else None
        est, approx = fit_verdict(f.size, shape, n_ctx, f.quantization, ram_available)
        rated.append(HubFile(f.name, f.size, f.quantization, f.sha256, f.shard,
                             est.fits, est.total, approx))
    return RepoReport(repo_id, _license(info.tags, info.card_data), bool(info.gated),
                      info.downloads, rated)
