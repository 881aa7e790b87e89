"""Small jobs every stage needs once: sizes, checksums, safe writes, ports.

A leaf: it imports nothing from the kit but errors, so any module may use it.

>>> human_size(98_362_432)        # '98.4 MB'
>>> sha256_file("model.gguf")     # 'b179c952...'
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path, chunk: int = CHUNK) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (memory stays small)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write data to path through a temp file of this writer's own, then rename.

    A crash or a full disk never leaves a half-written file under the real
    name, and two writers never share a temp file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """atomic_write_bytes for text (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def free_disk_bytes(path) -> int:
    """Free bytes on the drive holding path (or its nearest existing parent)."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    return shutil.disk_usage(existing).free


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def human_size(n: float) -> str:
    """Bytes in decimal units, as file managers show them: '98.4 MB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def text_table(rows: list[dict], columns: list[str] | None = None,
               right: tuple[str, ...] = ()) -> str:
    """Rows of dicts as an aligned plain-text table with a header line."""
    columns = columns or (list(rows[0]) if rows else [])
    cells = [[str(c) for c in columns]] + [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for row in cells:
        parts = [cell.rjust(w) if col in right else cell.ljust(w)
                 for cell, w, col in zip(row, widths, columns)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
