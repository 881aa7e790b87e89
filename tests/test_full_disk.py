"""A full disk: clear messages, nothing half-written, nothing left behind.

Where the test may mount one (root on Linux), a small tmpfs is a real full
disk (writes fail with ENOSPC). Everywhere, a file size limit (RLIMIT_FSIZE,
writes fail with EFBIG) stands in for it in a subprocess.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys

import pytest

from kit.errors import NotEnoughDisk, QuantizeFailed
from kit.models.registry import installed, register

KIT = [sys.executable, "-m", "kit"]


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs folder (skipped where mounting is not allowed)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs",
                           str(disk)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _fill(folder) -> None:
    """Write until the disk says it is full."""
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:
            pass


def _leftovers(folder) -> list:
    return [p.name for p in folder.rglob("*")
            if p.name.endswith((".tmp", ".partial"))]


def test_registering_on_a_full_disk_says_so(small_disk, starter_path):
    home = small_disk / "home"
    env = {**os.environ, "KIT_HOME": str(home)}
    first = subprocess.run([*KIT, "import", str(starter_path), "--name", "a:1",
                            "--in-place"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    listing = (home / "models.json").read_text()
    _fill(small_disk)
    full = subprocess.run([*KIT, "import", str(starter_path), "--name", "b:1",
                           "--in-place"], env=env, capture_output=True, text=True)
    assert full.returncode == 1
    assert "The disk is full" in full.stderr and "kit rm" in full.stderr
    assert "Traceback" not in full.stderr
    assert (home / "models.json").read_text() == listing  # as it was
    assert not _leftovers(home)  # no 0-byte temp file
    copy = subprocess.run([*KIT, "import", str(starter_path), "--name", "c:1"],
                          env=env, capture_output=True, text=True)
    assert copy.returncode == 1 and "Not enough disk space" in copy.stderr
    assert "Traceback" not in copy.stderr and not _leftovers(home)


def test_copying_onto_a_full_disk_says_so(small_disk):
    from kit.errors import DiskFull
    from kit.util import copy_stream

    _fill(small_disk)
    blocks = iter([b"x" * 65536] * 4)
    with pytest.raises(DiskFull, match="The disk is full"):
        copy_stream(lambda n: next(blocks, b""), small_disk / "copy.bin")


def _limit_file_size():  # in the child, before exec: writes past 200 bytes fail
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))


def test_registering_past_a_file_size_limit_says_so(tmp_path, starter_path):
    home = tmp_path / "home"
    env = {**os.environ, "KIT_HOME": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([*KIT, "import", str(starter_path), "--name", "b:1",
                           "--in-place"], env=env, capture_output=True,
                          text=True, preexec_fn=_limit_file_size)
    assert done.returncode == 1, done.stdout
    assert "The disk is full" in done.stderr and "Traceback" not in done.stderr
    assert not (home / "models.json").exists() and not _leftovers(home)


@pytest.fixture
def home_on(small_disk, monkeypatch, starter_path):
    home = small_disk / "home"
    monkeypatch.setenv("KIT_HOME", str(home))
    register("smollm2:135m", starter_path, source="test")  # in place
    return home


def test_quantize_checks_free_space_before_writing(home_on):
    from kit.quantize import quantize

    with pytest.raises(NotEnoughDisk, match="quantizing smollm2:135m to q8_0"):
        quantize("smollm2:135m", ["q8_0"], quiet=True)
    assert not _leftovers(home_on) and list(installed()) == ["smollm2:135m"]


def test_quantize_says_the_disk_filled_up(home_on, monkeypatch):
    import kit.quantize

    # the estimate passes, the disk fills up while llama.cpp writes
    monkeypatch.setattr(kit.quantize, "free_disk_bytes", lambda folder: 10**12)
    with pytest.raises(QuantizeFailed) as err:
        kit.quantize.quantize("smollm2:135m", ["q8_0"], quiet=True)
    assert "the disk is full" in str(err.value)
    assert "basic_ios" in str(err.value)  # llama.cpp's own words, explained
    assert not _leftovers(home_on) and list(installed()) == ["smollm2:135m"]
    json.loads((home_on / "models.json").read_text())
