"""The model list under pressure: many kit processes at once, and a damaged file.

Reproduces the report: 10 `kit import` at once lost names (66 of 70 exited 0,
42 registered) and 16 at once once left models.json unparseable. Now a file
lock serialises read-modify-write and each writer has a temp file of its own.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kit import cli
from kit.errors import RegistryDamaged
from kit.models import registry
from kit.models.starter import STARTER
from kit.util import sha256_file


def _link_or_copy(src: Path, dst: Path) -> Path:
    try:
        os.link(src, dst)
    except OSError:  # another drive: a symbolic link does as well here
        dst.symlink_to(src)
    return dst


def _import_at_once(files: list[Path], home: Path, in_place: bool) -> list:
    env = {**os.environ, "KIT_HOME": str(home)}
    extra = ["--in-place"] if in_place else []
    procs = [subprocess.Popen([sys.executable, "-m", "kit", "import", str(f),
                               "--name", f"race:{i}", *extra], env=env,
                              text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i, f in enumerate(files)]
    return [(p.wait(timeout=300), *p.communicate()) for p in procs]


@pytest.mark.parametrize("n, in_place", [(16, True), (10, False)])
def test_many_imports_at_once_are_all_registered(starter_path, tmp_path, n,
                                                 in_place):
    home = tmp_path / "home"
    files = [_link_or_copy(starter_path, tmp_path / f"m{i}.gguf") for i in range(n)]
    results = _import_at_once(files, home, in_place)
    for rc, out, err in results:
        assert rc == 0 and "Traceback" not in err, err
    reg = json.loads((home / "models.json").read_text())  # parses
    assert sorted(reg["models"]) == sorted(f"race:{i}" for i in range(n))
    for i in range(n):
        path = Path(reg["models"][f"race:{i}"]["path"])
        assert path.is_file() and path.stat().st_size == starter_path.stat().st_size
        assert (path == files[i].absolute()) == in_place
    # every writer's temp file was renamed or removed
    assert not [p.name for p in home.iterdir() if p.name.endswith(".tmp")]


def test_imports_of_one_name_at_once_never_mix_their_bytes(starter_path, kit_home,
                                                          monkeypatch):
    import kit.models.pull as pull

    real = pull.copy_stream

    def slow_copy(read, dest, *args, **kw):  # so that the copies overlap
        return real(lambda n: time.sleep(0.02) or read(n), dest, *args, **kw)

    monkeypatch.setattr(pull, "copy_stream", slow_copy)
    errors: list = []
    folder = kit_home / "models" / "race-0"  # what a killed import left there
    folder.mkdir(parents=True)
    stale = folder / f".{starter_path.name}.x1y2.partial"
    stale.write_bytes(b"\0" * 1000)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))

    def one():
        try:
            pull.import_file(starter_path, "race:0", force=True, quiet=True)
        except Exception as exc:  # noqa: BLE001 - collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    entry = registry.installed()["race:0"]
    assert sha256_file(entry["path"]) == entry["sha256"] == STARTER["sha256"]
    assert not [p.name for p in kit_home.rglob("*") if "partial" in p.name]



def test_a_stale_partial_another_import_removed_first_is_no_error(starter_path, kit_home,
                                                                   monkeypatch):
    """The race CI once met: two imports list the same stale partial file and
    the first removes it before the second looks at its age."""
    import kit.models.pull as pull

    real_glob = Path.glob
    gone = kit_home / "models" / "race-1" / f".{starter_path.name}.gone.partial"

    def glob(self, pattern):  # the listing still names a file that is gone
        return [*real_glob(self, pattern), gone] if pattern.endswith(".partial") else \
            real_glob(self, pattern)

    monkeypatch.setattr(Path, "glob", glob)
    ref = pull.import_file(starter_path, "race:1", quiet=True)
    assert sha256_file(ref.path) == STARTER["sha256"]
    plain = kit_home / "plain.txt"  # a file made as any program makes one
    plain.write_text("x")
    assert oct(ref.path.stat().st_mode & 0o777) == oct(plain.stat().st_mode & 0o777), \
        "an imported model should be readable like any other file (not 0600)"


DAMAGED = {"truncated": '{"models": {"a": ', "binary": "\x00\xff\x00",
           "a list": "[]", "wrong entries": '{"models": {"x": 3}}',
           "a folder": None}


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_list_says_the_way_out(kit_home, content):
    listing = kit_home / "models.json"
    kit_home.mkdir(parents=True)
    if content is None:
        listing.mkdir()
    else:
        listing.write_text(content, encoding="latin-1")
    with pytest.raises(RegistryDamaged, match="kit setup --reset-list"):
        registry.installed()
    kept = registry.move_aside()
    assert kept.name.startswith("models.json.damaged-") and not listing.exists()
    assert registry.installed() == {}


def test_a_damaged_list_blocks_neither_help_nor_doctor_nor_setup(
        kit_home, monkeypatch, capsys):
    from kit.doctor import _check_registry

    kit_home.mkdir(parents=True)
    listing = kit_home / "models.json"
    listing.write_text('{"models": {"a": ')
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    line = _check_registry()  # the doctor's line for it
    assert line.status == "FAIL" and "--reset-list" in line.detail
    assert cli.main(["list"]) == 1
    assert "--reset-list" in capsys.readouterr().err
    # without a terminal to ask in, `kit setup` refuses before downloading
    starts = []
    for where in ("kit.models.starter", "kit.cli"):  # wherever cli finds it
        monkeypatch.setattr(f"{where}.install_starter",
                            lambda **kw: starts.append(kw), raising=False)
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    assert cli.main(["setup"]) == 1
    assert not starts and listing.read_text() == '{"models": {"a": '
    # --reset-list keeps the damaged file beside it and starts a new list
    assert cli.main(["setup", "--reset-list"]) == 0
    kept = list(kit_home.glob("models.json.damaged-*"))
    assert len(starts) == 1 and len(kept) == 1
    assert kept[0].read_text() == '{"models": {"a": '
    assert registry.check_registry() == 0
    assert _check_registry().status == "OK"
    assert registry.move_aside() is None  # a sound list stays where it is
