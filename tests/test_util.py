"""kit.util: the small shared jobs, each checked against the standard library."""
import hashlib
import subprocess
import sys

import pytest

from kit import util


def test_sha256_matches_hashlib_and_reports_progress(tmp_path):
    data = bytes(range(256)) * 9000  # a little over 2 MiB: three blocks
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    seen = []
    assert util.sha256_file(path, seen.append) == hashlib.sha256(data).hexdigest()
    assert sum(seen) == len(data) and len(seen) == 3
    blob = util.feed_file(hashlib.sha1(b"blob %d\0" % len(data)), path).hexdigest()
    assert blob == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_sha256_cached_notices_a_changed_file(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("one")
    assert util.sha256_cached(path) == hashlib.sha256(b"one").hexdigest()
    path.write_text("three")  # another size: another key
    assert util.sha256_cached(path) == hashlib.sha256(b"three").hexdigest()
    util.remember_sha256(path, "0" * 64)  # verified elsewhere: not read again
    assert util.sha256_cached(path) == "0" * 64


def test_copy_stream_appends_and_hashes(tmp_path):
    dest, h = tmp_path / "out", hashlib.sha256()
    chunks = iter([b"abc", b"def", b""])
    assert util.copy_stream(lambda n: next(chunks), dest, h) == 6
    more = iter([b"gh", b""])
    assert util.copy_stream(lambda n: next(more), dest, h, append=True) == 2
    assert dest.read_bytes() == b"abcdefgh"
    assert h.hexdigest() == hashlib.sha256(b"abcdefgh").hexdigest()


def test_atomic_write_leaves_no_temp_file(tmp_path):
    path = util.atomic_write_text(tmp_path / "sub" / "a.json", "{}")
    assert path.read_text() == "{}" and [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_free_disk_and_ports(tmp_path):
    assert util.free_disk_bytes(tmp_path / "not" / "yet") > 0
    port = util.free_port()
    assert util.port_free(port)
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not util.port_free(port)


def test_lan_addresses_are_ipv4_and_not_loopback():
    for ip in util.lan_addresses():
        assert ip.count(".") == 3 and not ip.startswith("127.")


@pytest.mark.parametrize("env, offline", [
    ({}, False), ({"HF_HUB_OFFLINE": "1"}, True), ({"HF_HUB_OFFLINE": "0"}, False),
    ({"HF_HUB_OFFLINE": "yes"}, True), ({"TRANSFORMERS_OFFLINE": "ON"}, True),
])
def test_hf_settings_are_read_when_called(monkeypatch, tmp_path, env, offline):
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert util.hf_offline() is offline
    assert util.hf_cache_dir() == tmp_path / "hub"
    assert util.hf_endpoint() == "https://huggingface.co"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/")
    assert util.hf_endpoint() == "http://127.0.0.1:9"


def test_wait_until_ready_reports_ready_exited_and_timeout(tmp_path):
    port = util.free_port()
    serve = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
             "--directory", str(tmp_path)]
    proc, state = util.start_and_wait(serve, f"http://127.0.0.1:{port}/", 60,
                                      stderr=subprocess.DEVNULL)
    try:
        assert state == "ready" and proc.poll() is None
    finally:
        util.stop_process(proc)
    assert proc.poll() is not None
    proc, state = util.start_and_wait([sys.executable, "-c", "exit(3)"], lambda: False, 60)
    assert state == "exited" and proc.returncode == 3
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    proc, state = util.start_and_wait(sleeper, lambda: False, 0.5)
    assert state == "timeout" and proc.poll() is not None  # nothing left running


def test_text_table_aligns_and_upper_cases_headers():
    rows = [{"name": "smollm2:135m", "size": "98 MB"}, {"name": "b", "size": "1.2 GB"}]
    assert util.text_table(rows, right=("size",)).splitlines() == [
        "NAME            SIZE", "smollm2:135m   98 MB", "b             1.2 GB"]
    assert util.text_table(rows, indent="  ").splitlines()[0] == "  NAME          SIZE"


def test_remove_stale_removes_old_keeps_young_and_never_minds_a_gone_file(tmp_path):
    import os
    import time

    old, young = tmp_path / "old.partial", tmp_path / "young.partial"
    old.write_bytes(b"x" * 7)
    young.write_bytes(b"y")
    os.utime(old, (time.time() - 3600,) * 2)
    assert util.remove_stale(old, older_than=600) == 7 and not old.exists()
    assert util.remove_stale(young, older_than=600) is None and young.exists()
    assert util.remove_stale(old) is None  # already gone: another run took it
    assert util.remove_stale(young) == 1 and not young.exists()
