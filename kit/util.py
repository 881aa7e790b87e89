"""Small jobs every stage needs once: sizes, checksums, safe writes, ports,
network addresses, Hugging Face settings, tables, child processes.

A leaf: it imports nothing from the kit, so any module may use it.

>>> human_size(98_362_432)        # '98 MB'
>>> sha256_file("model.gguf")     # 'b179c952...'
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from kit.errors import DiskFull

CHUNK = 1 << 20
# a write that failed for want of room: no space, a quota, a file size limit
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_SHA256: dict = {}  # (path, size, mtime_ns) -> hex digest
_SHA256_LOCK = threading.Lock()


def feed_file(h, path, on_block=None):
    """Feed a file to the hash object h in 1 MiB blocks; return h.

    on_block(n) is called after each block (a progress bar's update).
    """
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
            if on_block:
                on_block(len(block))
    return h


def sha256_file(path, on_block=None) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (memory stays small)."""
    return feed_file(hashlib.sha256(), path, on_block).hexdigest()


def sha256_cached(path) -> str:
    """sha256_file, remembered while the file keeps its size and mtime."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _SHA256_LOCK:
        if key in _SHA256:
            return _SHA256[key]
    digest = sha256_file(path)
    with _SHA256_LOCK:
        _SHA256[key] = digest
    return digest


def remember_sha256(path, digest: str) -> None:
    """Tell sha256_cached a digest already verified (at install time)."""
    st = os.stat(path)
    with _SHA256_LOCK:
        _SHA256[(str(path), st.st_size, st.st_mtime_ns)] = digest


def copy_stream(read, dest, h=None, on_block=None, append: bool = False) -> int:
    """Copy read(n) blocks into dest (fsynced), feeding h; bytes written."""
    n = 0
    try:
        with open(dest, "ab" if append else "wb") as out:
            while block := read(CHUNK):
                if h is not None:
                    h.update(block)
                out.write(block)
                if on_block:
                    on_block(len(block))
                n += len(block)
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        if exc.errno in DISK_FULL:  # say so, not a traceback
            raise DiskFull(dest, exc) from exc
        raise
    return n


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write data to path through a temp file of this writer's own, then rename.

    A crash or a full disk never leaves a half-written file under the real
    name, and two writers never share a temp file.
    """
    path, tmp = Path(path), None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                   suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            raise DiskFull(path, exc) from exc
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """atomic_write_bytes for text (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def partial_path(dst) -> Path:
    """Where `dst` is written until it is complete: one per process, so two
    runs making the same file never write into each other's."""
    dst = Path(dst)
    return dst.with_name(f"{dst.name}.{os.getpid()}.partial")


def stale_partials(dst) -> list[Path]:
    """The partial files of `dst` left by runs that are no longer running
    (killed, or the power went): safe to remove. A live run's stays."""
    import psutil

    dst, out = Path(dst), []
    for p in dst.parent.glob(f"{dst.name}*.partial"):
        pid = p.name[len(dst.name):-len(".partial")].strip(".")
        if not pid:  # an older kit's name, without the process number
            out.append(p)
        elif pid.isdigit() and not psutil.pid_exists(int(pid)):
            out.append(p)
    return out


def remove_stale(path, older_than: float = 0.0) -> int | None:
    """Remove a leftover file if it is older than `older_than` seconds; its
    size, or None when it is younger or already gone (another run starting
    at the same moment may have removed it first)."""
    try:
        st = Path(path).stat()
        if time.time() - st.st_mtime < older_than:
            return None
        Path(path).unlink()
    except FileNotFoundError:
        return None
    return st.st_size


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


def listen_socket(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A socket listening on host:port (IPv4 or IPv6; port 0: any free port).

    Raises OSError (socket.gaierror for an unknown host name) for the
    caller to explain.
    """
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on host:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def lan_addresses() -> list[str]:
    """This computer's IPv4 addresses on its networks (not 127.x).

    Read from the network interfaces (psutil), so it works without a route
    to anywhere, as in a room with no internet.
    """
    import psutil

    found = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if (a.family == socket.AF_INET and not a.address.startswith("127.")
                    and a.address not in found):
                found.append(a.address)
    return found


# ---- Hugging Face settings, read when called (as the client reads them) ----

def notebooks_dir() -> Path | None:
    """The kit's notebooks: beside the package (a checkout), or installed with it.

    A wheel carries them to <prefix>/share/local-llm-workshop-kit/notebooks
    (pyproject's data-files), so an offline laptop has the dashboards too.
    """
    import sys

    for folder in (Path(__file__).resolve().parents[1] / "notebooks",
                   Path(sys.prefix) / "share" / "local-llm-workshop-kit" / "notebooks"):
        if (folder / "dashboards").is_dir():
            return folder
    return None


def hf_endpoint() -> str:
    """The Hub address: $HF_ENDPOINT (a mirror) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hf_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is on, as the client reads it."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hf_cache_dir() -> Path:
    """The shared Hugging Face cache: $HF_HUB_CACHE, else $HF_HOME/hub."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or Path(env.get("XDG_CACHE_HOME") or
                                      Path.home() / ".cache") / "huggingface"
    return Path(home).expanduser() / "hub"


# ---- child processes that serve something ----------------------------------

def url_answers(url: str, timeout: float = 2.0) -> bool:
    """True if an HTTP server answers at url (any status counts)."""
    import urllib.error  # here: http.client and email cost every `kit` command
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered: the server is up
    except (OSError, ValueError):
        return False


def wait_until_ready(proc, ready, timeout: float, interval: float = 0.2) -> str:
    """Wait until ready() (or a URL string) answers: 'ready', 'exited' or 'timeout'.

    'exited': the child stopped first (its code is proc.returncode);
    'timeout': it is stopped here, so nothing is left running.
    """
    check = (lambda: url_answers(ready)) if isinstance(ready, str) else ready
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            return "exited"
        if check():
            return "ready"
        if time.monotonic() > deadline:
            stop_process(proc)
            return "timeout"
        time.sleep(interval)


def start_and_wait(cmd, ready, timeout: float, **popen):
    """Start cmd as a child process; (process, wait_until_ready's answer)."""
    proc = subprocess.Popen(cmd, **popen)
    return proc, wait_until_ready(proc, ready, timeout)


def stop_process(proc, timeout: float = 10.0) -> None:
    """Stop a child politely (SIGTERM), then firmly; safe to call twice."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _short(value: float) -> str:
    # 3 significant figures at most: "1.2", "98", "135"
    return f"{value:.1f}".removesuffix(".0") if value < 10 else f"{value:.0f}"


def human_size(n_bytes: int) -> str:
    """Bytes in decimal units, like download pages: 98362432 -> '98 MB'."""
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6),
                        ("KB", 10**3)):
        if n_bytes >= scale:
            return f"{_short(n_bytes / scale)} {unit}"
    return f"{n_bytes} bytes"


def human_count(n: int) -> str:
    """A count as model names say it: 134515008 -> '135M'; 1.2e9 -> '1.2B'."""
    for unit, scale in (("T", 10**12), ("B", 10**9), ("M", 10**6),
                        ("K", 10**3)):
        if n >= scale:
            return f"{_short(n / scale)}{unit}"
    return str(n)


def text_table(rows: list[dict], columns: list[str] | None = None,
               right=(), headers: dict | None = None, indent: str = "") -> str:
    """Rows of dicts as an aligned plain-text table under an upper-case header.

    right: the columns aligned right (numbers); headers: other header texts.

    >>> print(text_table([{"name": "a", "size": "1 MB"}], right=("size",)))
    NAME  SIZE
    a     1 MB
    """
    columns = columns or (list(rows[0]) if rows else [])
    head = [(headers or {}).get(c, str(c).upper()) for c in columns]
    cells = [head] + [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for row in cells:
        parts = [cell.rjust(w) if col in right else cell.ljust(w)
                 for cell, w, col in zip(row, widths, columns)]
        lines.append((indent + "  ".join(parts)).rstrip())
    return "\n".join(lines)
