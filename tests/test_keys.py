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


def test_a_key_for_a_model_that_does_not_exist_is_refused(keys):
    from kit.errors import ModelNotFound

    with pytest.raises(ModelNotFound, match="doesnotexist"):
        add_key("ana", models=["doesnotexist"])
    made = kit("add", "ana", "--models", f"{MODEL},doesnotexist")
    assert made.returncode != 0 and "doesnotexist" in made.stderr
    assert "kit-" not in made.stdout and not read_keys()
    # installed, a family, a catalog model not pulled yet: all fine
    add_key("bea", models=[MODEL, "smollm2", "qwen2.5-coder:1.5b"])
    assert read_keys()["bea"].models == (MODEL, "smollm2", "qwen2.5-coder:1.5b")


def test_the_throttle_slows_repeated_failures_per_address():
    from kit.server.guard import Throttle

    now = [0.0]
    t = Throttle(free=3, window=60, longest=8, clock=lambda: now[0])
    assert [t.failed("10.0.0.5") for _ in range(7)] == [0, 0, 0, 1, 2, 4, 8]
    assert t.failed("10.0.0.5") == 8 and t.retry_after("10.0.0.5") == 8
    assert t.retry_after("10.0.0.6") == 0  # another address is not held back
    t.trust("10.0.0.5", "ana's hash")
    assert t.trusted("10.0.0.5", "ana's hash") and not t.trusted("10.0.0.6", "ana's hash")
    now[0] = 61.0  # the window has passed: typos are free again
    assert t.retry_after("10.0.0.5") == 0 and t.failed("10.0.0.5") == 0


EMBED = "all-minilm:l6-v2"


def test_a_key_reaches_only_its_models_on_every_route(keys, embedding_model_path):
    ana = add_key("ana", models=[MODEL])
    bob = add_key("bob", models=[MODEL])
    teacher = "teacher-key-" + "t" * 24
    as_ = lambda k: {"Authorization": f"Bearer {k}"}  # noqa: E731
    with start([MODEL, EMBED], n_ctx=256, n_threads=1, quiet=True,
               api_key=teacher) as srv:
        def call(method, path, key, **kw):
            return httpx.request(method, srv.url + path, headers=as_(key),
                                 timeout=120, **kw)

        loaded = call("POST", "/api/embed", teacher,
                      json={"model": EMBED, "input": "hi", "keep_alive": -1})
        assert loaded.status_code == 200
        for k in (ana, bob):
            call("POST", "/api/generate", k, json={
                "model": MODEL, "prompt": "Hi", "stream": False,
                "options": {"num_predict": 2}}).raise_for_status()
        # keep_alive 0 (`ollama stop`) of a model outside the key: refused,
        # and the model stays loaded for those allowed it
        for path, body in (("/api/generate", {"model": EMBED, "keep_alive": 0}),
                           ("/api/chat", {"model": EMBED, "keep_alive": 0,
                                          "messages": []}),
                           ("/api/generate", {"model": EMBED, "prompt": "x",
                                              "keep_alive": 0}),
                           ("/api/show", {"model": EMBED}),
                           ("/api/embed", {"model": EMBED, "input": "hi"})):
            r = call("POST", path, ana, json=body)
            assert r.status_code == 403, (path, r.text)
            assert "may not use" in r.json()["error"]
            assert str(embedding_model_path) not in r.text
        import time

        time.sleep(2.5)  # the reaper looks every second
        names = lambda r: [m["name"] for m in r.json()["models"]]  # noqa: E731
        assert EMBED in names(call("GET", "/api/ps", teacher))
        assert names(call("GET", "/api/ps", ana)) == [MODEL]
        assert call("POST", "/api/show", ana, json={"model": MODEL}).status_code == 200
        mine = call("GET", "/kit/status", ana).json()
        assert set(mine["usage"]) == {"ana"} and mine["models"] == [MODEL]
        assert [m["name"] for m in mine["loaded"]] == [MODEL]
        everyone = call("GET", "/kit/status", teacher).json()
        assert set(everyone["usage"]) == {"ana", "bob"}
        assert {m["name"] for m in everyone["loaded"]} == {MODEL, EMBED}


def test_wrong_keys_are_slowed_down_per_address(keys):
    ana = add_key("ana")
    late = add_key("late")
    with start([MODEL], n_ctx=256, n_threads=1, quiet=True,
               api_key="teacher-key-" + "t" * 24) as srv:
        url = srv.url + "/v1/models"
        auth = lambda k: {"Authorization": f"Bearer {k}"}  # noqa: E731
        assert httpx.get(url, headers=auth(ana)).status_code == 200
        codes = [httpx.get(url, headers=auth(f"kit-guess-{i}")).status_code
                 for i in range(40)]
        assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}
        r = httpx.get(url, headers=auth("kit-guess-again"))
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert "Too many wrong API keys" in r.json()["error"]["message"]
        import time

        while int(r.headers["Retry-After"]) < 4:  # time enough for what follows
            time.sleep(float(r.headers["Retry-After"]))
            r = httpx.get(url, headers=auth("kit-guess-again"))
            assert r.status_code == 429
        # a key that worked from here before still works; an untried one waits
        assert httpx.get(url, headers=auth(ana)).status_code == 200
        assert httpx.get(url, headers=auth(late)).status_code == 429
        assert "wrong API keys again and again" in srv.log(200)
        assert ana not in srv.log(400) and "kit-guess" not in srv.log(400)
