"""Installing an offline pack: fetch, verify, register; resume on retry.

>>> install_pack("/media/usb/room-pack")          # a folder
>>> install_pack("http://192.168.1.20:8765/")     # `kit pack serve` in the room
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import time
from pathlib import Path

from kit.errors import KitError, PackError, PackInstallFailed
from kit.room.common import (FORMAT, FORMAT_VERSION, MANIFEST, NAME_RE, copy_with_bar,
                             hash_with_bar, slug)
from kit.util import feed_file, free_disk_bytes
from kit.models.registry import installed, register
from kit.settings import get_settings

_REL = re.compile(r"(models|wheels)/[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")
_HEX = re.compile(r"[0-9a-f]{64}")
_KIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*(:[A-Za-z0-9._+-]+)?")
_HF_NAME = re.compile(r"hf\.co/[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(:[\w.+-]+)?")
STALL_S, STALL_BYTES = 30, 16_384  # slower than this for 30 s: give up
_REQ = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[\w,.-]+\])?[ <>=!~.,*\w]*"
                  r"(; *[\w .<>=!~'\"()-]+)?")


class _Source:
    """A pack in a folder (USB stick, shared drive) or at an http(s) URL."""

    def __init__(self, spec):
        spec = str(spec)
        self.url = self.dir = None
        if re.match(r"https?://", spec, re.I):
            base = spec.rsplit("/", 1)[0] if spec.endswith(".json") else spec
            self.url = base.rstrip("/") + "/"
            self.label = self.url
        else:
            path = Path(spec).expanduser()
            self.dir = path.parent if path.name == MANIFEST else path
            self.label = str(self.dir)

    def open(self, rel: str, offset: int = 0):
        """(file-like, True if it starts at offset, else at 0)."""
        if self.dir is not None:
            f = open(self.dir / rel, "rb")
            f.seek(offset)
            return f, True
        import urllib.request
        from urllib.parse import quote, urljoin, urlsplit
        import ipaddress

        url = urljoin(self.url, quote(rel))
        req = urllib.request.Request(url, headers={"User-Agent": "kit-pack"})
        if offset:
            req.add_header("Range", f"bytes={offset}-")
        handlers = []
        try:  # a pack on the room's network never goes through a proxy
            if ipaddress.ip_address(urlsplit(url).hostname).is_private:
                handlers.append(urllib.request.ProxyHandler({}))
        except ValueError:
            pass
        resp = urllib.request.build_opener(*handlers).open(req, timeout=30)
        return resp, resp.status == 206 and resp.headers.get(
            "Content-Range", "").startswith(f"bytes {offset}-")


class _Pace:
    """Reads what has arrived; gives up on a server that all but stopped."""

    def __init__(self):
        self.since, self.got = time.monotonic(), 0

    def read(self, f, n: int) -> bytes:
        block = getattr(f, "read1", f.read)(n)  # what is there, not all n
        self.got += len(block)
        if block and time.monotonic() - self.since >= STALL_S:
            if self.got < STALL_BYTES:  # e.g. a byte every 2 s: never a timeout
                raise PackError(
                    f"the server sent only {self.got:,} bytes in the last "
                    f"{STALL_S} s, so the transfer was stopped (the server is "
                    "stalled or overloaded, or the network is weak)")
            self.since, self.got = time.monotonic(), 0
        return block


def _reach_error(src: _Source, exc: Exception) -> PackError:
    import urllib.error

    if isinstance(exc, urllib.error.HTTPError):
        return PackError(f"No pack at {src.label} (HTTP {exc.code}): check the "
                         "address, e.g. http://192.168.1.20:8765/ as `kit pack "
                         "serve` printed it.")
    if src.dir is not None:
        return PackError(f"No pack in {src.label} (no {MANIFEST}): check the "
                         "path (a USB stick may be mounted elsewhere).")
    return PackError(f"Could not reach {src.label} ({getattr(exc, 'reason', exc)})"
                     ": is `kit pack serve` running on the instructor's laptop, "
                     "and is this computer on the same network?")


def _name_ok(name) -> bool:
    """A kit name (smollm2:135m) or hf.co/OWNER/REPO:QUANT: never a path."""
    return (isinstance(name, str) and ".." not in name
            and bool(NAME_RE.fullmatch(name))
            and bool(_KIT_NAME.fullmatch(name) or _HF_NAME.fullmatch(name)))


def _entry_problem(e, model: bool) -> str | None:
    """What is wrong with one manifest entry, in words; None if nothing."""
    if not isinstance(e, dict):
        return "is not a JSON object"
    size, file, digest = e.get("size"), e.get("file"), e.get("sha256")
    if type(size) is not int or size <= 0:  # not bool, which is an int too
        return f"has size {repr(size)[:40]} (it must be a number of bytes)"
    if not isinstance(file, str) or not _REL.fullmatch(file) or ".." in file:
        return f"has file {repr(file)[:80]} (it must be models/NAME or wheels/NAME)"
    if not isinstance(digest, str) or not _HEX.fullmatch(digest):
        return f"has sha256 {repr(digest)[:80]} (it must be 64 hex digits)"
    if model and not _name_ok(e.get("name")):
        return (f"names the model {repr(e.get('name'))[:80]}, which is not a kit "
                "name (letters, digits, '.', '-', '_' and one ':', or "
                "hf.co/OWNER/REPO:QUANT)")
    return None


def _check_manifest(m, where: str) -> dict:
    """Check a manifest from elsewhere: names, paths, sizes and sums only."""
    bad = PackError(f"The pack's {MANIFEST} at {where} is damaged or not a kit "
                    "pack: ask the instructor to rebuild it (`kit pack build`).")
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise bad
    version = m.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise PackError(f"This pack was made by a newer kit "
                        f"({m.get('kit_version')}): upgrade the kit (`pip "
                        "install -U local-llm-workshop-kit`), then try again.")
    models, w = m.get("models"), m.get("wheels")
    if not isinstance(models, list):
        raise bad
    entries = [(f"model entry {i}", e, True) for i, e in enumerate(models, 1)]
    if isinstance(w, dict) and isinstance(w.get("files"), list):
        entries += [(f"wheel entry {i}", e, False) for i, e in enumerate(w["files"], 1)]
    names = [e.get("name") for e in models if isinstance(e, dict)]
    for what, e, model in entries:
        why = _entry_problem(e, model)
        if not why and model and names.count(e["name"]) > 1:
            why = f"repeats the name {e['name']!r}"
        if why:
            raise PackError(f"The pack's {MANIFEST} at {where} is not valid: its "
                            f"{what} {why}. Ask the instructor to rebuild the "
                            "pack (`kit pack build`).")
    if w is not None and not (
            isinstance(w, dict) and isinstance(w.get("files"), list)
            and isinstance(w.get("install"), list)  # no pip options in here
            and all(_REQ.fullmatch(str(r)) for r in w["install"])
            and isinstance(w.get("notes", []), list)):
        raise bad
    return m


def read_manifest(source) -> dict:
    """The checked manifest of a pack folder or URL."""
    src = source if isinstance(source, _Source) else _Source(source)
    try:
        f, _ = src.open(MANIFEST)
        with f:
            pace, raw = _Pace(), b""
            while len(raw) <= 10 * 2**20 and (block := pace.read(f, 1 << 16)):
                raw += block
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise _reach_error(src, exc) from exc
    try:
        return _check_manifest(json.loads(raw), src.label)
    except (ValueError, RecursionError):
        return _check_manifest(None, src.label)


def _fetch(src: _Source, entry: dict, target: Path, quiet: bool,
           resume: bool = True) -> None:
    """Download or copy one file to target, verified; resumes a .partial."""
    partial = target.with_name(target.name + ".partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    size, h, have = entry["size"], hashlib.sha256(), 0
    if resume and partial.is_file() and partial.stat().st_size < size:
        have = partial.stat().st_size
        feed_file(h, partial)
    try:
        f, resumed = src.open(entry["file"], have)
        if have and not resumed:  # the server ignored Range: start over
            h, have = hashlib.sha256(), 0
        left, pace = [size - have], _Pace()

        def read(n):  # never more than the manifest says: a disk stays free
            block = pace.read(f, min(n, left[0])) if left[0] > 0 else b""
            left[0] -= len(block)
            return block

        with f:
            got = have + copy_with_bar(read, partial, h, size,
                                       Path(entry["file"]).name, quiet, have)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        n = partial.stat().st_size if partial.exists() else 0
        raise PackError(f"the transfer stopped after {n:,} of {size:,} bytes "
                        f"({exc or type(exc).__name__})") from exc
    if got != size:
        raise PackError(f"the transfer stopped after {got:,} of {size:,} bytes")
    if h.hexdigest() != entry["sha256"]:
        partial.unlink(missing_ok=True)
        if have:  # a stale .partial from another pack: try once from zero
            return _fetch(src, entry, target, quiet, resume=False)
        raise PackError(f"checksum mismatch (sha256 {h.hexdigest()[:12]}..., "
                        f"the manifest says {entry['sha256'][:12]}...): the "
                        "pack's file is damaged; nothing was kept")
    os.replace(partial, target)  # only a verified file gets its real name


def _already_here(entry: dict, candidates, quiet: bool) -> Path | None:
    for path in candidates:
        if (path and path.is_file() and path.stat().st_size == entry["size"]
                and hash_with_bar(path, f"Checking {path.name}", quiet) == entry["sha256"]):
            return path
    return None


def _engine(entry: dict) -> dict:
    engine = str(entry.get("engine") or "")
    return {"engine": engine} if re.fullmatch(r"\w{1,32}", engine) else {}


def _wheel_commands(src: _Source) -> list[str]:
    if src.dir is not None:
        w, r, find = src.dir / "wheels", src.dir / "requirements.txt", ""
    else:
        from urllib.parse import urlsplit

        w, r = src.url + "wheels/", src.url + "requirements.txt"
        find = f" --trusted-host {urlsplit(src.url).hostname}"
    return [f"python -m pip install --no-index --find-links {w}{find} -r {r}"]


def _install_wheels(src: _Source, manifest: dict, quiet: bool) -> Path:
    """Fetch and verify every wheel, then pip install from them, offline."""
    from kit.machine import cpu_model_and_flags
    from kit.room.cpu import refusal

    why = refusal(manifest["wheels"].get("llama_cpu"), cpu_model_and_flags()[1])
    if why:  # before pip: an 'illegal instruction' later would explain nothing
        raise PackError(why)
    import subprocess
    import sys

    # a folder's wheels are checked where they are; a URL's are fetched
    house = src.dir / "wheels" if src.dir else get_settings().home / "wheelhouse"
    for entry in manifest["wheels"]["files"]:
        target = house / Path(entry["file"]).name
        if _already_here(entry, [target], True):
            continue
        if src.dir:
            raise PackError(f"The pack's wheel {target} is missing or damaged "
                            "(checksum): ask the instructor for a fresh copy.")
        try:
            _fetch(src, entry, target, quiet)
        except PackError as exc:
            raise PackError(f"Wheel {target.name}: {exc}. Run the same "
                            "command again (downloads resume).") from exc
    cmd = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links",
           str(house), "--disable-pip-version-check",
           *manifest["wheels"]["install"]]
    if subprocess.run(cmd).returncode != 0:
        raise PackError("pip could not install the pack's wheels (see its "
                        "message above). They may be for another Python or "
                        f"system ({manifest['wheels']['platform']}, Python "
                        f"{manifest['wheels']['python']}).")
    return house


def _pack_name(entry: dict, registry: dict) -> str:
    """name-pack, name-pack2, ...: the one holding this file, else a free one."""
    for n in range(1, 100):
        candidate = f"{entry['name']}-pack{n if n > 1 else ''}"
        if registry.get(candidate, {}).get("sha256", entry["sha256"]) == entry["sha256"]:
            return candidate
    raise PackError(f"Too many models are named {entry['name']}-pack...: "
                    "remove some (`kit rm NAME`).")


def install_pack(source, install_wheels: bool = False,
                 quiet: bool = False) -> list[dict]:
    """Fetch, verify and register every model of a pack (folder or URL).

    A model whose checksum is wrong is not registered; the others are, and
    then PackInstallFailed lists what failed.
    """

    say = (lambda *a: None) if quiet else print
    src = _Source(source)
    manifest = read_manifest(src)
    models_dir = get_settings().models_dir
    registry = installed()  # what a learner already has
    needed = sum(m["size"] for m in manifest["models"])
    if free_disk_bytes(models_dir) < needed:
        raise PackError(f"Not enough disk space in {models_dir}: the pack's "
                        f"models need {needed / 1e9:.2f} GB. Free some space "
                        "(`kit rm NAME`) or set KIT_HOME to a bigger drive.")
    done, failures = [], {}
    for entry in manifest["models"]:
        name = entry["name"]
        target = models_dir / slug(name) / Path(entry["file"]).name
        known = Path(registry[name]["path"]) if name in registry else None
        try:
            here = _already_here(entry, [target, known], quiet)
            if (here is None and known and known.is_file()
                    and os.path.abspath(known) != os.path.abspath(target)):
                # the name is taken by another file: keep it, never re-point it
                name = _pack_name(entry, registry)
                target = models_dir / slug(name) / Path(entry["file"]).name
                say(f"{entry['name']} is already installed as another file "
                    f"({known}); it stays as it is, and the pack's model is "
                    f"installed as {name}.")
                here = _already_here(entry, [target], quiet)
            if here is None:
                _fetch(src, entry, target, quiet)
            path = here or target
            if path == target:  # in the kit's folder: `kit rm` may delete it
                register(name, path, entry["sha256"], owned=True,
                         license=entry.get("license"),
                         source=f"pack {src.label}", **_engine(entry))
        except KitError as exc:
            failures[name] = str(exc).rstrip(".") + "."
            continue
        status = "already here" if here else "installed"
        done.append({"name": name, "status": status, "path": str(path),
                     "size": entry["size"], "pack_name": entry["name"]})
        say(f"{name}: {status}, sha256 verified ({path})")
    if manifest.get("wheels") and not failures:
        if install_wheels:
            house = _install_wheels(src, manifest, quiet)
            say(f"Installed the pack's Python packages from {house}.")
        else:
            say("This pack also holds the kit's Python packages. To install "
                "them with no internet:\n  " + "\n  ".join(
                    _wheel_commands(src))
                + "\n(or run `kit pack install ... --install-wheels`).")
    if failures:
        raise PackInstallFailed(failures, [d["name"] for d in done])
    return done
