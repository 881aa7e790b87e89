"""Room keys (kit.server.keys, kit keys ...): one per learner or table, each
checked by a real `kit serve`, its use counted, its models limited."""
import json
import subprocess
import sys

import httpx
import openai
import pytest

from kit.errors import KeyNameTaken, UnknownKey
from kit.server import start
from kit.server.keys import KeyRing, add_key, read_keys, revoke_key

MODEL = "smollm2:135m"


@pytest.fixture
def keys(tmp_path, monkeypatch):
    path = tmp_path / "keys.json"
    monkeypatch.setenv("KIT_KEYS", str(path))
    return path


def test_keys_are_stored_as_hashes_and_revoked(keys):
    key = add_key("table-3", models=["smollm2"])
    assert key not in keys.read_text()  # only its hash is kept
    assert (keys.stat().st_mode & 0o777) == 0o600
    ring = KeyRing(keys)
    assert ring.check(key).name == "table-3" and ring.check(key + "x") is None
    assert ring.check(key).allows("smollm2:135m") and not ring.check(key).allows("qwen")
    with pytest.raises(KeyNameTaken, match="kit keys revoke table-3"):
        add_key("table-3")
    revoke_key("table-3")
    assert ring.check(key) is None and read_keys()["table-3"].revoked
    with pytest.raises(UnknownKey, match="table-3"):
        revoke_key("table-9")
    assert add_key("table-3") != key  # a revoked name can be given again


def kit(*args):
    return subprocess.run([sys.executable, "-m", "kit", "keys", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_shows_a_key_once(keys):
    made = kit("add", "ana", "--models", MODEL)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("kit-") and len(key) > 30
    listed = kit("list")
    assert "ana" in listed.stdout and MODEL in listed.stdout and key not in listed.stdout
    assert kit("add", "bad name!").returncode != 0
    assert kit("revoke", "ana").returncode == 0
    assert "revoked" in kit("list").stdout


def test_server_takes_each_key_counts_use_and_limits_models(keys):
    ana = add_key("ana")
    bob = add_key("bob", models=["qwen2.5-coder:1.5b"])
    gone = add_key("gone")
    teacher = "teacher-key-" + "t" * 24  # the room key of before: still works
    with start([MODEL], n_ctx=256, n_threads=1, parallel=2, quiet=True,
               api_key=teacher) as srv:
        url = srv.url + "/v1/chat/completions"
        body = {"model": MODEL, "max_tokens": 5, "temperature": 0,
                "messages": [{"role": "user", "content": "Hi"}]}
        oai = openai.OpenAI(base_url=srv.openai_url, api_key=ana, max_retries=0)
        r = oai.chat.completions.create(**body)
        assert r.choices[0].message.content
        assert httpx.post(url, json=body, timeout=60).status_code == 401
        refused = httpx.post(url, json=body, timeout=60,
                             headers={"Authorization": f"Bearer {bob}"})
        assert refused.status_code == 403 and "qwen2.5-coder:1.5b" in refused.text
        gone_auth = {"Authorization": f"Bearer {gone}"}
        assert httpx.get(srv.url + "/v1/models", headers=gone_auth).status_code == 200
        revoke_key("gone")  # at once, without restarting the server
        assert httpx.get(srv.url + "/v1/models", headers=gone_auth).status_code == 401
        st = httpx.get(srv.url + "/kit/status",
                       headers={"Authorization": f"Bearer {ana}"}).json()
        assert st["usage"]["ana"]["requests"] == 1
        assert st["usage"]["ana"]["tokens"] == r.usage.completion_tokens
        assert ana not in json.dumps(st) and ana not in srv.log(400)
