"""The model registry: kit names for .gguf files, in one small JSON file.

Every stage resolves names here, so it sits low: it imports only the leaves
and the catalog (to say "not pulled yet" for a known name). Notebook 02.

>>> resolve("smollm2:135m").path   # a path you can hand to any engine
>>> installed()                    # {"smollm2:135m": {...}, ...}
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError, ModelNotFound, NotPulledYet, RegistryDamaged
from kit.models.catalog import get as catalog_entry
from kit.modelfile import read_facts, validate
from kit.settings import get_settings
from kit.util import atomic_write_text

HF_PREFIX = "hf.co/"
EMBEDDING_MODEL = "all-minilm:l6-v2"  # not a chat model, so not in the catalog


@dataclass(frozen=True)
class ModelRef:
    """A model the kit can load: its name, its file and (if known) sha256."""

    name: str
    path: Path
    sha256: str | None = None


# ---- the registry: one small JSON file, locked and written atomically ------

def _load_registry() -> dict:
    path = get_settings().registry_path
    try:
        reg = json.loads(path.read_text())
    except FileNotFoundError:
        return {"models": {}}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryDamaged(path, exc) from exc  # unreadable: a folder, no rights
    if not isinstance(reg, dict) or not isinstance(reg.get("models"), dict) or \
            not all(isinstance(m, dict) and isinstance(m.get("path"), str)
                    for m in reg["models"].values()):
        raise RegistryDamaged(path, ValueError("not a list of models"))
    return reg


def _save_registry(reg: dict) -> None:
    # atomic, with a temp file of its own: a crash or a second writer never
    # leaves half a registry
    atomic_write_text(get_settings().registry_path,
                      json.dumps(reg, indent=2, sort_keys=True))


def _lock():
    from filelock import FileLock

    path = get_settings().registry_path
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock", timeout=60)


def check_registry() -> int:
    """The number of registered models; RegistryDamaged if the list is unreadable."""
    return len(_load_registry().get("models", {}))


def move_aside() -> Path | None:
    """Rename a damaged models.json (kept, dated) so a new list can start.

    Returns where the old file went, or None when the list was sound.
    """
    path = get_settings().registry_path
    with _lock():
        try:
            _load_registry()
            return None
        except RegistryDamaged:
            pass
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        dest = path.with_name(f"{path.name}.damaged-{stamp}")
        os.replace(path, dest)
        return dest


@contextmanager
def editing():
    """Read, change and save the registry under a file lock (many processes)."""
    with _lock():
        reg = _load_registry()
        yield reg
        _save_registry(reg)


def register(name: str, path, sha256: str | None = None, **extra) -> ModelRef:
    """Give a .gguf file a kit name (the file is validated first)."""
    # absolute, not resolved: a Hugging Face cache entry keeps its readable
    # snapshots/<commit>/<file> name instead of blobs/<sha256>
    path = Path(os.path.abspath(Path(path).expanduser()))
    validate(path)
    entry = {
        "path": str(path),
        "sha256": sha256,
        "size": path.stat().st_size,
        "added": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    with editing() as reg:
        reg["models"][name] = entry
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
            entry = catalog_entry(name)
            if entry is not None:
                raise NotPulledYet(entry["name"], entry["size"])
            if name.startswith(HF_PREFIX) or name == EMBEDDING_MODEL:
                raise NotPulledYet(name)
            raise ModelNotFound(name, list(models))
        name = matches[0]
    entry = models[name]
    return ModelRef(name, Path(entry["path"]), entry.get("sha256"))


def list_models() -> list[dict]:
    """Installed models with name, size, quantization and path (for `kit list`)."""
    rows = []
    for name, entry in installed().items():
        try:
            quant = read_facts(entry["path"]).quantization
        except KitError:
            quant = "damaged"
        rows.append({"name": name, "size": entry["size"], "quantization": quant,
                     "path": entry["path"]})
    return rows


def info(name: str | None = None):
    """Facts about a model file, by kit name or path, read without loading weights."""
    return read_facts(resolve(name).path)
