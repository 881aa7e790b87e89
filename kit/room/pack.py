"""Offline workshop packs: models with checksums, plus wheels, for a room.

>>> build_pack("room-pack", models=["smollm2:135m"])  # instructor, online
>>> # kit pack serve room-pack --host 0.0.0.0          # instructor, in the room
>>> # kit pack install http://192.168.1.20:8765/       # each learner (room/install.py)
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import textwrap
from pathlib import Path

from kit.errors import PackError
from kit.room.common import (FORMAT, FORMAT_VERSION, MANIFEST, NAME_RE, WHEELS_GUESS,
                             copy_with_bar, hash_with_bar, slug)
from kit.util import free_disk_bytes, notebooks_dir
from kit import __version__
from kit.modelfile import read_facts, validate
from kit.models.registry import installed, resolve
from kit.room.wheelhouse import build_wheelhouse


# ---- build ------------------------------------------------------------------

def _check_destination(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise PackError(f"{dest} is a file, not a folder: choose a folder name "
                        "for the pack.")
    if dest.is_dir() and any(dest.iterdir()):
        if not force:
            raise PackError(f"{dest} is not empty. Choose a new folder, or add "
                            "--force to replace the pack that is there.")
        if not (dest / MANIFEST).is_file():
            raise PackError(f"{dest} is not empty and holds no pack, so --force "
                            "will not delete it: choose a new or empty folder.")


def _add_model(ref, entry: dict, root: Path, used: set, quiet: bool) -> dict:
    validate(ref.path)  # never pack a damaged file
    fname = ref.path.name
    if fname in used:
        fname = f"{slug(ref.name)}-{fname}"
    used.add(fname)
    rel, size, h = f"models/{fname}", ref.path.stat().st_size, hashlib.sha256()
    with open(ref.path, "rb") as f:
        copy_with_bar(f.read, root / rel, h, size, f"Copying {ref.name}", quiet)
    digest = h.hexdigest()
    if ref.sha256 and digest != ref.sha256:
        raise PackError(
            f"{ref.name}: the file {ref.path} changed since it was installed "
            f"(sha256 {digest[:12]}..., recorded {ref.sha256[:12]}...). "
            "Download it again (starter model: `kit setup --force`), then "
            "build the pack again.")
    facts = read_facts(ref.path)
    source = entry.get("source") or "local"
    if entry.get("repo"):  # pulled from the Hub: say exactly where from
        source = f"hf.co/{entry['repo']}/{entry.get('file') or fname}"
    out = {"name": ref.name, "file": rel, "size": size, "sha256": digest,
           "quantization": facts.quantization, "source": source,
           "license": entry.get("license") or facts.license}
    if entry.get("engine"):  # e.g. a copy converted for ctransformers
        out["engine"] = entry["engine"]
    return out


def _add_notebooks(root: Path) -> bool:
    """The lesson notebooks and dashboards, as a folder and as notebooks.zip
    (one file a learner can download from `kit pack serve`)."""
    src = notebooks_dir()
    if src is None:
        return False
    shutil.copytree(src, root / "notebooks", ignore=shutil.ignore_patterns(
        ".ipynb_checkpoints", "__pycache__", "*.pyc"))
    shutil.make_archive(str(root / "notebooks"), "zip", root, "notebooks")
    return True


def install_text(manifest: dict) -> str:
    """INSTALL.txt: the exact commands for a learner's laptop, in order."""
    lines = ["Offline workshop pack", "=====================", "",
             f"Made {manifest['created']} by kit {manifest['kit_version']}.",
             "Models: " + ", ".join(m["name"] for m in manifest["models"]), ""]
    step = 1
    w = manifest.get("wheels")
    if w:
        lines += [f"{step}. The kit and its Python packages (wheels for Python "
                  f"{w['python']} on {w['platform']}),", "   with no internet. "
                  "In this folder:", "",
                  "    python -m venv kit-env",
                  "    source kit-env/bin/activate      (Windows: "
                  "kit-env\\Scripts\\activate)",
                  "    python -m pip install --no-index --find-links wheels/ "
                  "-r requirements.txt",
                  "    KIT_WHEELHOUSE=wheels/ kit setup", "",
                  "   Laptops with another operating system or Python version "
                  "need the internet,", "   or a pack built on a laptop like "
                  "theirs.", ""]
        lines += [textwrap.fill(f"Note: {n}", 76, subsequent_indent="   ") + "\n"
                  for n in w["notes"]]
        step += 1
    else:
        lines += ["This pack has no Python packages: install the kit first (see "
                  "its README).", ""]
    lines += [f"{step}. The models (from this folder, or from the instructor's",
              "   `kit pack serve` address, such as http://192.168.1.20:8765/):", "",
              "    kit pack install PATH_OR_URL_OF_THIS_PACK", ""]
    step += 1
    if manifest.get("notebooks"):
        lines += [f"{step}. The notebooks: copy the notebooks/ folder of this pack "
                  "to your laptop, or", "   download notebooks.zip from the "
                  "instructor's address (for example", "   http://192.168.1.20:"
                  "8765/notebooks.zip) and unzip it. Then:", "",
                  "    jupyter lab notebooks/00_setup_check.ipynb", "",
                  "   The dashboards need no copy: `kit dashboard chat` "
                  "(also arena, fit, ...).", ""]
    return "\n".join(lines) + "\n"


def build_pack(dest, models=None, wheels: bool = True, force: bool = False,
               quiet: bool = False, requirements=None, llama_wheel=None,
               portable: bool = False) -> Path:
    """Write a pack folder: models/, wheels/, manifest.json, INSTALL.txt.

    portable: ship a llama-cpp-python compiled for any x86-64 processor with
    AVX2 (kit.room.wheelhouse.portable_wheel), not the one tuned for this one.

    >>> build_pack("room-pack", ["smollm2:135m"], wheels=False)
    """

    say = (lambda *a: None) if quiet else print
    dest = Path(dest).expanduser().resolve()
    if isinstance(models, str):
        models = models.split(",")
    names = [n.strip() for n in models or [] if n.strip()] or [None]
    # an unknown name stops us before anything is written
    refs = list({r.name: r for r in map(resolve, names)}.values())
    for r in refs:
        if not NAME_RE.fullmatch(r.name):
            raise PackError(f"{r.name!r} cannot travel in a pack: give the "
                            "file a simple name first (`kit import FILE.gguf "
                            "--name family:size`).")
    _check_destination(dest, force)
    needed = sum(r.path.stat().st_size for r in refs)
    needed += WHEELS_GUESS if wheels else 0
    if free_disk_bytes(dest.parent) < needed:
        raise PackError(f"Not enough disk space in {dest.parent}: the pack needs "
                        f"about {needed / 1e9:.1f} GB. Choose another drive.")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted build
    (partial / "models").mkdir(parents=True)
    try:
        registry, used = installed(), set()
        entries = [_add_model(r, registry.get(r.name, {}), partial, used, quiet)
                   for r in refs]
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                    "kit_version": __version__,
                    "created": _dt.datetime.now(_dt.timezone.utc)
                    .isoformat(timespec="seconds"),
                    "models": entries, "wheels": None,
                    "notebooks": _add_notebooks(partial)}
        if wheels:
            info = build_wheelhouse(partial / "wheels", requirements,
                                    llama_wheel=llama_wheel, say=say, portable=portable)
            files = sorted((partial / "wheels").iterdir())
            info["files"] = [{"file": f"wheels/{p.name}", "size": p.stat().st_size,
                              "sha256": hash_with_bar(p, p.name, True)} for p in files]
            manifest["wheels"] = info
            (partial / "requirements.txt").write_text(
                "".join(r + "\n" for r in info["install"]))
        (partial / "INSTALL.txt").write_text(install_text(manifest))
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        old = dest.with_name(dest.name + ".old")
        if dest.exists():  # empty, or an old pack and --force (checked above)
            os.replace(dest, old)
        os.replace(partial, dest)  # the pack appears whole, or not at all
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    total = sum(e["size"] for e in entries)
    say(f"Pack ready in {dest}: {len(entries)} model(s), {total / 1e6:.0f} MB"
        + (f", {len(manifest['wheels']['files'])} wheels" if wheels else "")
        + f". Share it on a USB stick, or run `kit pack serve {dest}`.")
    return dest
