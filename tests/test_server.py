"""kit serve against its real peers: the official openai and ollama clients.

Servers run as real subprocesses on loopback (kit.server.start), with the
real starter model; curl-style requests go through httpx.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import jsonschema
import ollama
import openai
import psutil
import pytest

from kit.engines import load
from kit.errors import ApiKeyRequired, ServerStartFailed
from kit.server import start

MODEL = "smollm2:135m"
# One thread: other test runs share these 2 cores, and llama.cpp's threads
# wait for each other, so 2 threads on a busy machine run many times slower.
T1 = dict(n_threads=1)
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
BOOK = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "author": {"type": "string", "maxLength": 60},
        "year": {"type": "integer"},
        "language": {"type": "string", "enum": ["English", "French", "German"]},
    },
    "required": ["title", "author", "year", "language"],
    "additionalProperties": False,
}
BOOK_PROMPT = [{"role": "user", "content":
                "Give the catalogue record of the novel Emma by Jane Austen "
                "(1815) as JSON with title, author, year and language."}]


@pytest.fixture(scope="module")
def server():
    # One answer at a time: the queue's own order and limits are tested here;
    # answers given together in one batch: tests/test_server_batch.py.
    with start([MODEL], n_ctx=1024, quiet=True, parallel=1, **T1) as srv:
        yield srv


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.openai_url, api_key="unused",
                         max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def oll(server):
    return ollama.Client(host=server.url, timeout=300)


@pytest.fixture(scope="module")
def engine():
    """The same model in this process: the reference for greedy answers."""
    return load(MODEL, n_ctx=1024, quiet=True, **T1)


def wait_for(check, timeout=20.0, every=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s")


# ---- the OpenAI API, through OpenAI's own client ------------------------------

def test_openai_lists_the_model(oai):
    ids = [m.id for m in oai.models.list()]
    assert ids == [MODEL]


def test_openai_chat_matches_the_in_process_engine(oai, engine):
    r = oai.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0,
                                    max_tokens=32, seed=1)
    want = engine.chat(FRANCE, temperature=0, max_tokens=32, seed=1)
    assert r.choices[0].message.content == want.text
    assert "France" in r.choices[0].message.content  # a real, on-topic answer
    assert r.choices[0].message.role == "assistant"
    assert r.usage.prompt_tokens == want.stats.prompt_tokens
    assert r.usage.completion_tokens == want.stats.generated_tokens
    assert r.choices[0].finish_reason in ("stop", "length")


def test_openai_streamed_chat_equals_the_plain_answer(oai):
    kw = dict(model=MODEL, messages=FRANCE, temperature=0, max_tokens=24)
    plain = oai.chat.completions.create(**kw).choices[0].message.content
    chunks = list(oai.chat.completions.create(stream=True, stream_options={
        "include_usage": True}, **kw))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == plain
    assert sum(1 for p in pieces if p) > 3  # it really streamed, piece by piece
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop",
                                                                            "length")
    assert chunks[-1].usage.completion_tokens > 0 and chunks[-1].choices == []


def test_openai_completions_plain_and_streamed(oai, engine):
    prompt = "The three primary colours are"
    r = oai.completions.create(model=MODEL, prompt=prompt, max_tokens=12,
                               temperature=0)
    assert r.choices[0].text == engine.generate(prompt, max_tokens=12,
                                                temperature=0).text
    assert r.usage.completion_tokens == 12 and r.choices[0].finish_reason == "length"
    streamed = oai.completions.create(model=MODEL, prompt=prompt, max_tokens=12,
                                      temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed) == r.choices[0].text


def test_openai_json_schema_answer_validates(oai):
    r = oai.chat.completions.create(
        model=MODEL, messages=BOOK_PROMPT, temperature=0, max_tokens=200,
        response_format={"type": "json_schema",
                         "json_schema": {"name": "book", "schema": BOOK,
                                         "strict": True}})
    record = json.loads(r.choices[0].message.content)
    jsonschema.validate(record, BOOK)
    assert record["author"] and record["title"]


CITY = [{"role": "user", "content": 'Give a JSON object with the key "city" for '
         "the capital of France."}]


def test_openai_json_object_mode(oai):
    r = oai.chat.completions.create(model=MODEL, messages=CITY, temperature=0,
                                    max_tokens=60, response_format={"type": "json_object"})
    assert "Paris" in json.dumps(json.loads(r.choices[0].message.content))


# ---- the Ollama API, through Ollama's own client ------------------------------

def test_ollama_list_show_and_ps(oll):
    names = [m.model for m in oll.list().models]
    assert names == [MODEL]
    info = oll.show(MODEL)
    assert info.details.format == "gguf" and info.details.quantization_level == "Q4_1"
    assert info.modelinfo["general.architecture"] == "llama"
    assert "<|im_start|>" in info.template
    oll.generate(model=MODEL, prompt="")  # an empty prompt just loads the model
    assert MODEL in [m.model for m in oll.ps().models]


def test_ollama_chat_with_options_and_figures(oll, engine):
    r = oll.chat(model=MODEL, messages=FRANCE,
                 options={"temperature": 0, "seed": 1, "num_predict": 24})
    want = engine.chat(FRANCE, temperature=0, seed=1, max_tokens=24)
    assert r.message.content == want.text and r.message.role == "assistant"
    assert r.done and r.done_reason in ("stop", "length")
    assert r.eval_count == want.stats.generated_tokens
    assert r.prompt_eval_count == want.stats.prompt_tokens
    for field in ("total_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(getattr(r, field), int) and getattr(r, field) > 0, field
    assert r.total_duration >= r.eval_duration + r.prompt_eval_duration


def test_ollama_streams_ndjson_and_honours_num_predict(oll):
    parts = list(oll.chat(model="smollm2", messages=FRANCE, stream=True,
                          options={"temperature": 0, "num_predict": 10}))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert len(parts) > 3
    assert parts[-1].eval_count == 10 and parts[-1].done_reason == "length"
    text = "".join(p.message.content for p in parts)
    plain = oll.chat(model=MODEL, messages=FRANCE,
                     options={"temperature": 0, "num_predict": 10}).message.content
    assert text == plain


def test_ollama_generate_and_seed(oll):
    kw = dict(model=MODEL, prompt="Write one word about the sea.",
              options={"temperature": 1.0, "seed": 42, "num_predict": 16})
    a, b = oll.generate(**kw), oll.generate(**kw)
    assert a.response == b.response and a.response
    raw = oll.generate(model=MODEL, prompt="1, 2, 3, 4,", raw=True,
                       options={"temperature": 0, "num_predict": 6})
    assert "5" in raw.response


def test_ollama_format_schema_and_json(oll):
    r = oll.chat(model=MODEL, messages=BOOK_PROMPT, format=BOOK,
                 options={"temperature": 0, "num_predict": 200})
    jsonschema.validate(json.loads(r.message.content), BOOK)
    g = oll.generate(model=MODEL, prompt=CITY[0]["content"], format="json",
                     options={"temperature": 0, "num_predict": 60})
    assert "Paris" in json.dumps(json.loads(g.response))


def test_tokenizer_endpoints_serve_the_remote_engine(server, engine):
    from kit.engines.remote import RemoteEngine

    remote = RemoteEngine(base_url=server.url)
    text = "Libraries lend books, tools and knowledge."
    assert remote.tokenize(text) == engine.tokenize(text)
    r = httpx.post(server.url + "/extras/detokenize",
                   json={"tokens": engine.tokenize(text)})
    assert r.json()["text"] == text
    bad = httpx.post(server.url + "/extras/detokenize", json={"tokens": [5, 10**9]})
    assert bad.status_code == 400 and "0 to 49151" in bad.json()["error"]


# ---- errors: clear statuses and messages, never a 500 or a dropped connection --

def test_unknown_model_is_404_listing_the_models(oai, oll):
    with pytest.raises(openai.NotFoundError) as err:
        oai.chat.completions.create(model="llama9:1t", messages=FRANCE)
    assert err.value.status_code == 404
    assert MODEL in err.value.body["message"]
    assert err.value.body["code"] == "model_not_found"
    with pytest.raises(ollama.ResponseError) as err:
        oll.chat(model="llama9:1t", messages=FRANCE)
    assert err.value.status_code == 404 and MODEL in err.value.error


@pytest.mark.parametrize("path,body,words", [
    ("/v1/chat/completions", "{not json", ["Malformed", "JSON"]),
    ("/v1/chat/completions", {"model": MODEL}, ["messages"]),
    ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "king",
                                                            "content": "hi"}]},
     ["role"]),
    ("/v1/chat/completions", {"model": MODEL, "messages": FRANCE, "temperature": -1},
     ["temperature", "between"]),
    ("/v1/chat/completions", {"model": MODEL, "messages": FRANCE, "n": 3}, ["n must be 1"]),
    ("/v1/chat/completions", {"model": MODEL, "messages": FRANCE, "response_format":
                              {"type": "json_schema", "json_schema": {
                                  "name": "x", "schema": {"type": "frob"}}}},
     ["schema"]),
    ("/v1/chat/completions", {"model": MODEL, "messages": [
        {"role": "user", "content": "word " * 1100}]}, ["context window"]),
    ("/v1/completions", {"model": MODEL, "prompt": ["a", "b"]}, ["one prompt"]),
    ("/api/chat", {"model": MODEL, "messages": FRANCE, "options": {"top_p": 7}},
     ["top_p"]),
    ("/api/chat", {"messages": FRANCE}, ["model"]),
    ("/api/generate", {"model": MODEL, "prompt": "hi", "images": ["aGk="]},
     ["text only"]),
    ("/api/show", {"model": "nope"}, ["nope"]),
])
def test_malformed_requests_get_400_with_a_message(server, path, body, words):
    data = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(server.url + path, content=data, timeout=60,
                   headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 404), r.text
    err = r.json()["error"]
    message = err["message"] if isinstance(err, dict) else err
    for w in words:
        assert w in message, message


def test_ollama_style_curl_without_content_type(server):
    # Ollama's examples: curl http://.../api/generate -d '{...}' (form type)
    r = httpx.post(server.url + "/api/generate", timeout=60,
                   content=json.dumps({"model": MODEL, "prompt": "Hi", "stream": False,
                                       "options": {"num_predict": 4}}),
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and r.json()["eval_count"] == 4


def test_foreign_web_pages_are_refused(server):
    r = httpx.get(server.url + "/v1/models", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = httpx.get(server.url + "/v1/models",
                  headers={"Origin": "http://127.0.0.1.evil.example"})
    assert r.status_code == 403
    ok = httpx.get(server.url + "/v1/models", headers={"Origin": "http://localhost:8888"})
    assert ok.status_code == 200


def test_unknown_route_is_a_json_404(server):
    r = httpx.get(server.url + "/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


# ---- disconnects, queueing, load ----------------------------------------------

COUNT = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
# At least 400 numbers: the grammar allows no end before that, so only the
# token limit (or the context, 1024 tokens) ends such an answer.
NUMBERS = {"type": "array", "items": {"type": "integer"}, "minItems": 400}


def _cancelled(server):
    return server.status()["counters"]["cancelled"]


def test_client_disconnect_stops_the_generation_sse(server):
    before = _cancelled(server)
    body = {"model": MODEL, "messages": COUNT, "max_tokens": 900, "temperature": 0,
            "stream": True, "response_format": {
                "type": "json_schema", "json_schema": {"name": "n", "schema": NUMBERS}}}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body,
                      timeout=60) as r:
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]
    assert any(line.startswith("data:") for line in got)
    wait_for(lambda: _cancelled(server) == before + 1)
    st = server.status()
    assert not st["loaded"][0]["busy"]
    assert "Cancelled a generation" in server.log(50)


def test_client_disconnect_stops_the_generation_ndjson(server):
    before = _cancelled(server)
    body = {"model": MODEL, "messages": COUNT, "format": NUMBERS,
            "options": {"num_predict": 900, "temperature": 0}}
    with httpx.stream("POST", server.url + "/api/chat", json=body, timeout=60) as r:
        lines = r.iter_lines()
        first = json.loads(next(lines))
        assert first["done"] is False
    wait_for(lambda: _cancelled(server) == before + 1)
    # the model is free again at once: a new request is answered
    r = httpx.post(server.url + "/api/generate", timeout=60, json={
        "model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    assert r.json()["eval_count"] == 2


def test_busy_model_serves_requests_in_arrival_order(server):
    order, lock = [], threading.Lock()

    def ask(i):
        r = httpx.post(server.url + "/api/generate", timeout=120, json={
            "model": MODEL, "prompt": f"Say {i}.", "stream": False,
            "options": {"num_predict": 40 if i == 0 else 3}})
        assert r.status_code == 200
        with lock:
            order.append(i)

    threads = []
    for i in range(4):
        threads.append(threading.Thread(target=ask, args=(i,)))
        threads[-1].start()
        time.sleep(0.5)  # request 0 holds the model; 1, 2, 3 queue behind it
    for t in threads:
        t.join(150)
    assert order == [0, 1, 2, 3]


def test_a_client_that_leaves_the_queue_gives_up_its_place(server):
    counting = {"model": MODEL, "prompt": "Numbers:", "raw": True, "stream": False,
                "format": NUMBERS}
    before = server.status()["counters"]
    first = threading.Thread(target=lambda: httpx.post(
        server.url + "/api/generate", timeout=120,
        json={**counting, "options": {"num_predict": 300, "temperature": 0}}))
    first.start()
    time.sleep(0.5)
    with pytest.raises(httpx.ReadTimeout):  # waits behind the first, then leaves
        httpx.post(server.url + "/api/generate", timeout=1.0, json=counting)
    first.join(150)
    st = wait_for(lambda: (s := server.status())["loaded"][0]["waiting"] == 0
                  and not s["loaded"][0]["busy"] and s)
    # Had the second stayed, it would now be writing ~1000 tokens.
    assert st["counters"]["completed"] == before["completed"] + 1
    assert st["counters"]["requests"] == before["requests"] + 2
    assert st["counters"]["errors"] == before["errors"]
    r = httpx.post(server.url + "/api/generate", timeout=60, json={
        "model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    assert r.json()["eval_count"] == 2


@pytest.fixture(scope="module")
def small_queue_server():
    with start([MODEL], n_ctx=512, max_queue=3, quiet=True, parallel=1, **T1) as srv:
        yield srv


def test_eight_streaming_clients_complete_or_are_told_to_retry(small_queue_server):
    srv = small_queue_server
    rss = psutil.Process(srv.proc.pid)
    httpx.post(srv.url + "/api/generate", json={"model": MODEL, "prompt": ""},
               timeout=60)  # loaded: memory "before" includes the model
    before = rss.memory_info().rss
    outcomes, stop_at = [], time.monotonic() + 12

    def client(i):
        while time.monotonic() < stop_at:
            body = {"model": MODEL, "stream": True, "max_tokens": 16, "seed": i,
                    "messages": [{"role": "user", "content": f"Tell me fact {i}."}]}
            try:
                with httpx.stream("POST", srv.url + "/v1/chat/completions", json=body,
                                  timeout=httpx.Timeout(90, connect=10)) as r:
                    if r.status_code == 503:
                        outcomes.append(("busy", r.headers.get("retry-after")))
                        r.read()
                        time.sleep(0.5)
                        continue
                    lines = [line for line in r.iter_lines() if line]
                    outcomes.append(("ok" if r.status_code == 200 and
                                     lines[-1] == "data: [DONE]" else "bad",
                                     r.status_code))
            except httpx.HTTPError as exc:
                outcomes.append(("error", repr(exc)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(200)
    assert not any(t.is_alive() for t in threads), "a client hung"
    kinds = {k for k, _ in outcomes}
    assert kinds <= {"ok", "busy"}, [o for o in outcomes if o[0] not in ("ok", "busy")]
    assert "ok" in kinds and "busy" in kinds  # 8 clients, 1 running + 3 queued
    assert all(v and int(v) >= 1 for k, v in outcomes if k == "busy")
    status = srv.status()
    assert status["counters"]["refused"] == sum(1 for k, _ in outcomes if k == "busy")
    assert status["loaded"][0]["waiting"] == 0 and not status["loaded"][0]["busy"]
    grown = rss.memory_info().rss - before
    assert grown < 150_000_000, f"server memory grew by {grown / 1e6:.0f} MB"


def test_models_load_on_first_use_and_lru_stays_in_budget(starter_path, tmp_path):
    other = tmp_path / "second-copy.gguf"
    os.link(starter_path, other)  # a second model file (same weights, no copying)
    with start([MODEL, str(other)], n_ctx=512, memory_budget_mb=500, quiet=True,
               **T1) as srv:
        assert srv.models == [MODEL, "second-copy"]
        assert srv.status()["loaded"] == []  # nothing until a request needs it

        def loaded():
            return [m["name"] for m in srv.status()["loaded"]]

        ask = lambda name: httpx.post(srv.url + "/api/generate", timeout=60, json={  # noqa
            "model": name, "prompt": "Hi", "stream": False,
            "options": {"num_predict": 2}}).raise_for_status()
        ask(MODEL)
        assert loaded() == [MODEL]
        ask("second-copy")
        assert loaded() == ["second-copy"]  # one fits in 500 MB: the older went
        ask(MODEL)
        assert loaded() == [MODEL]
        assert "to stay within the memory budget" in srv.log(50)


# ---- the API key: required off this computer ----------------------------------

def test_start_refuses_a_non_local_address_without_a_key():
    with pytest.raises(ApiKeyRequired, match="API key"):
        start([MODEL], host="127.0.0.2", quiet=True)


def test_non_loopback_bind_requires_the_key():
    key = "test-key-" + os.urandom(8).hex()
    with start([MODEL], host="127.0.0.2", api_key=key, n_ctx=256, quiet=True,
               **T1) as srv:
        assert srv.url.startswith("http://127.0.0.2:")
        assert httpx.get(srv.url + "/v1/models").status_code == 401
        assert httpx.get(srv.url + "/api/tags").status_code == 401
        bad = httpx.get(srv.url + "/v1/models", headers={"Authorization": "Bearer no"})
        assert bad.status_code == 401 and "API key" in bad.json()["error"]["message"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=srv.openai_url, api_key="wrong",
                          max_retries=0).models.list()
        good = openai.OpenAI(base_url=srv.openai_url, api_key=key, max_retries=0)
        assert [m.id for m in good.models.list()] == [MODEL]
        oll = ollama.Client(host=srv.url, headers={"Authorization": f"Bearer {key}"})
        assert oll.generate(model=MODEL, prompt="Hi",
                            options={"num_predict": 3}).eval_count == 3
        with pytest.raises(ollama.ResponseError) as err:
            ollama.Client(host=srv.url).list()
        assert err.value.status_code == 401
        assert key not in srv.log(200) and key not in repr(srv)


def test_kit_serve_with_host_makes_a_private_key_file(kit_home, starter_path):
    env = {**os.environ, "KIT_HOME": str(kit_home), "HF_HUB_OFFLINE": "1"}
    env.pop("KIT_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kit", "serve", str(starter_path), "--host",
         "127.0.0.2", "--port", "0", "--ctx", "256", "--threads", "1",
         "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("kit server on"):
                break
        out = "".join(lines)
        key_file = kit_home / "server" / "api-key"
        assert str(key_file) in out and "not printed" in out
        assert key_file.stat().st_mode & 0o777 == 0o600
        key = key_file.read_text().strip()
        assert len(key) >= 24 and key not in out
        url = out.split("kit server on ")[1].split()[0]
        assert httpx.get(url + "/v1/models").status_code == 401
        ok = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)


# ---- starting and stopping ----------------------------------------------------

def test_start_reports_an_unknown_model_quickly():
    t0 = time.monotonic()
    with pytest.raises(ServerStartFailed, match="nope:1b"):
        start(["nope:1b"], quiet=True)
    assert time.monotonic() - t0 < 30


def test_start_reports_a_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ServerStartFailed, match=f"{port}.*--port"):
            start([MODEL], port=port, quiet=True)


def test_stop_ends_the_process_and_frees_the_port():
    srv = start([MODEL], n_ctx=256, quiet=True, **T1)
    pid, port = srv.proc.pid, int(srv.url.rsplit(":", 1)[1])
    assert srv.running and httpx.get(srv.url + "/").text == "kit server is running"
    srv.stop()
    assert not srv.running and not psutil.pid_exists(pid) or \
        psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    with socket.socket() as s:  # free again (as a restarted server binds it)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
    srv.stop()  # twice is fine


def test_server_ends_when_the_notebook_kernel_dies():
    # A kernel killed outright (no atexit) must not leave a server holding
    # its port and memory: the server watches the process that started it.
    code = ("from kit.server import start; import time; "
            "s = start(['smollm2:135m'], n_ctx=256, n_threads=1, quiet=True); "
            "print(s.proc.pid, flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              text=True)
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.is_running()
        parent.kill()
        parent.wait(10)
        gone, alive = psutil.wait_procs([child], timeout=15)
        assert gone and not alive
    finally:
        parent.kill()
