"""What building, installing and serving a pack share: the format and safe copying.

Imported by kit/room/pack.py, install.py and serve.py; imports none of them.
"""
from __future__ import annotations

import re
from pathlib import Path

from kit.util import copy_stream, sha256_file

FORMAT, FORMAT_VERSION, MANIFEST = "kit-pack", 1, "manifest.json"
WHEELS_GUESS = 300 * 10**6  # room to leave for a full wheelhouse
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}")  # kit names


def slug(name: str) -> str:
    """A folder name for a model name: 'smollm2:135m' -> 'smollm2-135m'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"


def progress_bar(total: int, desc: str, quiet: bool, initial: int = 0):
    """A byte-counting progress bar (hidden when quiet)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="B",
                unit_scale=True, unit_divisor=1000, disable=quiet)


def copy_with_bar(read, dest: Path, h, size: int, desc: str, quiet: bool,
                  have: int = 0) -> int:
    """Copy read() into dest (appending after `have` bytes), hashing, with a bar."""
    with progress_bar(size, desc, quiet, have) as bar:
        return copy_stream(read, dest, h, bar.update, append=bool(have))


def hash_with_bar(path: Path, desc: str, quiet: bool) -> str:
    """sha256 of a file, with a progress bar (files here are large)."""
    with progress_bar(path.stat().st_size, desc, quiet) as bar:
        return sha256_file(path, bar.update)
