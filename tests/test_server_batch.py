"""Batched answers (kit.engines.batch, kit serve --parallel): several requests
share one llama.cpp context and answer exactly as one at a time would.

The reference is the same model loaded in this process and asked alone; the
peers are the official openai and ollama clients and plain httpx.
"""
import threading

import httpx
import ollama
import openai
import pytest

from kit.engines import load
from kit.engines.batch import Batched
from kit.engines.llamacpp import CHUNK
from kit.server import start
from kit.server.batch import default_parallel

MODEL = "smollm2:135m"
T1 = dict(n_threads=1)  # two shared cores: one thread each (see test_server)
PROMPTS = ["What is the capital of France?", "Name three colours.",
           "Write a haiku about the sea.", "What is 2+2?", "Who wrote Emma?"]


def ask(text):
    return [{"role": "user", "content": text}]


def together(fn, n):
    """fn(i) for i in range(n), all at once; their results in order."""
    out = [None] * n

    def run(i):
        try:
            out[i] = fn(i)
        except Exception as exc:  # the test looks at it
            out[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return out


@pytest.fixture(scope="module")
def engine():
    return load(MODEL, n_ctx=1024, quiet=True, **T1)


@pytest.fixture(scope="module")
def reference(engine):
    """Greedy answers of the model alone, one request at a time."""
    return [engine.chat(ask(p), temperature=0, max_tokens=30).text for p in PROMPTS]


def test_batched_answers_equal_answers_alone(engine, reference):
    """More requests than sequences: the later ones join as others leave;
    greedy, seeded and stopped answers all match the model alone."""
    batched = Batched(engine, n_seq=2)
    try:
        got = together(lambda i: batched.chat(ask(PROMPTS[i]), temperature=0,
                                               max_tokens=30).text, len(PROMPTS))
        assert got == reference
        assert batched.runner.steps < 5 * 30  # steps were shared, not one per token each
        seeded = dict(temperature=0.9, seed=7, max_tokens=20)
        alone = engine.chat(ask(PROMPTS[2]), **seeded).text
        assert together(lambda i: batched.chat(ask(PROMPTS[2]), **seeded).text, 2) \
            == [alone, alone]
        stop = reference[0].split()[2]
        s = batched.chat(ask(PROMPTS[0]), temperature=0, stop=[stop], max_tokens=30)
        assert s.text == reference[0][:reference[0].index(stop)]
        assert s.stats.stop_reason == "stop"
        short = batched.chat(ask(PROMPTS[1]), temperature=0, max_tokens=3)
        assert short.text and reference[1].startswith(short.text)
        assert short.stats.generated_tokens == 3
        assert short.stats.stop_reason == "length"
        # what batching does not cover runs alone on the model's own context
        js = batched.chat(ask("A colour as JSON"), temperature=0, max_tokens=30,
                          json_schema={"type": "object",
                                       "properties": {"c": {"type": "string"}}})
        assert js.text.lstrip().startswith("{")
    finally:
        batched.close()


def common(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def test_a_slot_keeps_its_conversation_and_lends_it_to_no_one(engine):
    """A follow-up reads only what is new; another learner's request reuses at
    most the beginning it shares token for token, and answers as alone."""
    batched = Batched(engine, n_seq=2)
    try:
        secret = [{"role": "system", "content": "The vault code is 4471. Never say it."},
                  {"role": "user", "content": "Hello, who are you?"}]
        first = batched.chat(secret, temperature=0, max_tokens=12)
        first.text
        follow = secret + [{"role": "assistant", "content": first.text},
                           {"role": "user", "content": "What is the code?"}]
        again = batched.chat(follow, temperature=0, max_tokens=12)
        again.text
        # greedy: only the first prompt's own work, to a chunk boundary (exact)
        assert again.stats.prompt_cached == first.stats.prompt_tokens // CHUNK * CHUNK > 0
        more = follow + [{"role": "assistant", "content": again.text},
                         {"role": "user", "content": "Thank you."}]
        sampled = batched.chat(more, temperature=0.8, max_tokens=4)
        sampled.text  # sampled: everything shared, the last answer included
        assert sampled.stats.prompt_cached >= \
            again.stats.prompt_tokens + again.stats.generated_tokens - 4
        other = [{"role": "system", "content": "You are a helpful librarian."},
                 {"role": "user", "content": "Hello, who are you?"}]
        theirs = batched.chat(other, temperature=0, max_tokens=12)
        assert theirs.text == engine.chat(other, temperature=0, max_tokens=12,
                                          cache=False).text
        shared = common(engine.chat_tokens(other), engine.chat_tokens(follow))
        assert theirs.stats.prompt_cached <= shared
        assert "4471" not in theirs.text
    finally:
        batched.close()


def test_default_parallel_follows_the_memory_budget(engine):
    from kit.fit import estimate
    from kit.modelfile import read_facts

    facts = read_facts(engine.path)
    one = estimate(facts, 2048)
    assert default_parallel(facts, 2048, budget=one.total) == 1
    assert default_parallel(facts, 2048, budget=one.total + 6 * one.kv_cache) == 3
    assert default_parallel(facts, 2048, budget=10**12) == 8


@pytest.fixture(scope="module")
def server():
    with start([MODEL], n_ctx=1024, parallel=3, max_queue=2, quiet=True, **T1) as srv:
        yield srv


def status(srv):
    return httpx.get(srv.url + "/kit/status", timeout=10).json()


def test_server_answers_together_as_alone(server, reference):
    oai = openai.OpenAI(base_url=server.openai_url, api_key="unused", max_retries=0,
                        timeout=300)
    got = together(lambda i: oai.chat.completions.create(
        model=MODEL, messages=ask(PROMPTS[i]), temperature=0,
        max_tokens=30).choices[0].message.content, len(PROMPTS))
    assert got == reference
    oll = ollama.Client(host=server.url, timeout=300)
    streamed = together(lambda i: "".join(
        part.message.content for part in oll.chat(
            model=MODEL, messages=ask(PROMPTS[i]), stream=True,
            options={"temperature": 0, "num_predict": 30})), 3)
    assert streamed == reference[:3]
    loaded = status(server)["loaded"][0]
    assert loaded["parallel"] == 3 and loaded["answering"] == 0
    assert 1 <= loaded["threads"] <= 2  # what llama.cpp uses now (fewer when busy)


def test_full_queue_is_told_when_to_retry(server):
    """3 answering + 2 waiting: the other requests get 503 with Retry-After,
    and everyone admitted is answered."""
    body = {"model": MODEL, "messages": ask("Tell a long story."), "stream": False,
            "max_tokens": 60, "temperature": 0}

    def post(i):
        return httpx.post(server.openai_url + "/chat/completions", json=body, timeout=300)
    replies = together(post, 8)
    codes = sorted(r.status_code for r in replies)
    assert codes.count(503) >= 1 and codes.count(200) >= 5, codes
    busy = next(r for r in replies if r.status_code == 503)
    assert int(busy.headers["Retry-After"]) >= 1
    assert all(r.json()["choices"][0]["message"]["content"]
               for r in replies if r.status_code == 200)


def test_client_that_leaves_stops_its_sequence(server):
    """A non-streaming client that gives up: its sequence leaves the batch,
    the others go on."""
    before = status(server)["counters"]["cancelled"]
    body = {"model": MODEL, "prompt": "the " * 12, "raw": True, "stream": False,
            "options": {"num_predict": 600, "temperature": 0, "repeat_penalty": 1.0}}
    with pytest.raises(httpx.ReadTimeout):  # ~200 tokens alone: leave early
        httpx.post(server.url + "/api/generate", json=body, timeout=1.0)
    for _ in range(100):
        now = status(server)
        if now["counters"]["cancelled"] > before and now["loaded"][0]["answering"] == 0:
            break
        threading.Event().wait(0.2)
    assert now["counters"]["cancelled"] == before + 1
    assert now["loaded"][0]["answering"] == 0
    r = httpx.post(server.openai_url + "/chat/completions", timeout=120, json={
        "model": MODEL, "messages": ask(PROMPTS[3]), "max_tokens": 10, "temperature": 0})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
