"""What building, installing and serving a pack share: the format and safe copying.

Imported by kit/room/pack.py, install.py and serve.py; imports none of them.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from kit.util import free_disk_bytes

FORMAT, FORMAT_VERSION, MANIFEST = "kit-pack", 1, "manifest.json"
CHUNK = 1 << 20
WHEELS_GUESS = 300 * 10**6  # room to leave for a full wheelhouse
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}")  # kit names


def _slug(name: str) -> str:
    """A folder name for a model name: 'smollm2:135m' -> 'smollm2-135m'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def _bar(total: int, desc: str, quiet: bool, initial: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B",
                unit_scale=True, unit_divisor=1000, disable=quiet)


def _stream(read, partial: Path, h, bar, append: bool = False) -> int:
    """Copy read() into partial, feeding the hash and the bar; bytes written."""
    n = 0
    with open(partial, "ab" if append else "wb") as out:
        while block := read(CHUNK):
            h.update(block)
            out.write(block)
            bar.update(len(block))
            n += len(block)
        out.flush()
        os.fsync(out.fileno())
    return n


def _hash(path: Path, desc: str, quiet: bool) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f, _bar(path.stat().st_size, desc, quiet) as bar:
        while block := f.read(CHUNK):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()


def _free_bytes(folder: Path) -> int:
    return free_disk_bytes(folder)
