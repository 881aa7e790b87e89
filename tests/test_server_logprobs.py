"""Token probabilities through kit serve, read by the official openai and ollama
clients (their own types parse the answers), against the in-process engine."""
import math

import ollama
import openai
import pytest

from kit.engines import load
from kit.errors import NoProbabilities
from kit.server import start

MODEL = "smollm2:135m"
T1 = dict(n_threads=1)  # other test runs share the cores
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
# greedy, and no repeat penalty: the chosen token is then the likeliest one
GREEDY = dict(temperature=0, seed=1, extra_body={"repeat_penalty": 1.0})


@pytest.fixture(scope="module")
def server():
    with start([MODEL], n_ctx=1024, quiet=True, **T1) as srv:
        yield srv


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.openai_url, api_key="unused", max_retries=0,
                         timeout=300)


@pytest.fixture(scope="module")
def oll(server):
    return ollama.Client(host=server.url, timeout=300)


@pytest.fixture(scope="module")
def engine():
    return load(MODEL, n_ctx=1024, quiet=True, **T1)


def test_openai_chat_logprobs_match_the_engine(oai, engine):
    r = oai.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=8,
                                    logprobs=True, top_logprobs=3, **GREEDY)
    choice = r.choices[0]
    content = choice.logprobs.content
    assert "".join(t.token for t in content) == choice.message.content
    assert len(content) == r.usage.completion_tokens
    first = engine.next_tokens(FRANCE, k=3)
    assert [c.token for c in content[0].top_logprobs] == [c.text for c in first]
    assert content[0].logprob == pytest.approx(first[0].logprob, abs=1e-3)
    for t in content:
        assert bytes(t.bytes).decode("utf-8", "replace") and len(t.top_logprobs) == 3
        assert t.logprob <= 0 and t.token == t.top_logprobs[0].token  # greedy

    chunks = list(oai.chat.completions.create(
        model=MODEL, messages=FRANCE, max_tokens=8, logprobs=True, top_logprobs=3,
        stream=True, **GREEDY))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs
                for t in c.choices[0].logprobs.content]
    assert [(t.token, round(t.logprob, 4)) for t in streamed] == \
        [(t.token, round(t.logprob, 4)) for t in content]
    for c in chunks:  # each chunk carries the tokens of its own text
        if c.choices and c.choices[0].delta.content:
            assert "".join(t.token for t in c.choices[0].logprobs.content) == \
                c.choices[0].delta.content


def test_openai_chat_without_logprobs_sends_none(oai):
    r = oai.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=2, **GREEDY)
    assert r.choices[0].logprobs is None


def test_openai_completions_logprobs(oai, engine):
    prompt = "The capital of France is"
    r = oai.completions.create(model=MODEL, prompt=prompt, max_tokens=6, logprobs=2,
                               echo=True, **GREEDY)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text[len(prompt):]
    assert lp.text_offset[0] == len(prompt) and lp.text_offset == sorted(lp.text_offset)
    assert all(len(top) <= 2 and max(top.values()) == pytest.approx(v, abs=1e-4)
               for top, v in zip(lp.top_logprobs, lp.token_logprobs))
    assert lp.token_logprobs[0] == pytest.approx(
        engine.next_tokens(prompt, k=1)[0].logprob, abs=1e-3)

    chunks = list(oai.completions.create(model=MODEL, prompt=prompt, max_tokens=6,
                                         logprobs=0, stream=True, **GREEDY))
    tokens = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens]
    assert tokens == lp.tokens
    assert all(top == {} for c in chunks if c.choices[0].logprobs
               for top in c.choices[0].logprobs.top_logprobs)


@pytest.mark.parametrize("stream", [False, True])
def test_ollama_chat_and_generate_logprobs(oll, stream):
    opts = {"temperature": 0, "seed": 1, "num_predict": 6}
    parts = oll.chat(model=MODEL, messages=FRANCE, options=opts, logprobs=True,
                     top_logprobs=2, stream=stream)
    parts = list(parts) if stream else [parts]
    text = "".join(p.message.content for p in parts)
    tokens = [t for p in parts for t in (p.logprobs or [])]
    assert "".join(t.token for t in tokens) == text and len(tokens) == 6
    assert all(len(t.top_logprobs) == 2 and math.exp(t.logprob) <= 1 for t in tokens)

    parts = oll.generate(model=MODEL, prompt="Why is the sky blue?", options=opts,
                         logprobs=True, stream=stream)
    parts = list(parts) if stream else [parts]
    tokens = [t for p in parts for t in (p.logprobs or [])]
    assert "".join(t.token for t in tokens) == "".join(p.response for p in parts)
    assert all(not t.top_logprobs for t in tokens)


def test_out_of_range_top_logprobs_is_a_clear_400(oai, oll):
    with pytest.raises(openai.BadRequestError, match="from 0 to 20"):
        oai.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=1,
                                    logprobs=True, top_logprobs=21)
    with pytest.raises(ollama.ResponseError, match="from 0 to 20"):
        oll.chat(model=MODEL, messages=FRANCE, logprobs=True, top_logprobs=99)


@pytest.mark.parametrize("kind", ["chat", "generate"])
def test_the_remote_engine_brings_the_servers_probabilities(server, engine, kind):
    remote = load(MODEL, engine="remote", base_url=server.openai_url, quiet=True)
    kw = dict(max_tokens=10, temperature=0, seed=1, repeat_penalty=1.0,
              logprobs=True, top_logprobs=3)
    ask = (lambda m: m.chat(FRANCE, **kw)) if kind == "chat" else (
        lambda m: m.generate("The capital of France is", **kw))
    near, far = ask(engine), ask(remote)
    assert far.text == near.text and far.logprobs and not far.stats.notices
    assert [t.text for t in far.logprobs] == [t.text for t in near.logprobs]
    for a, b in zip(far.logprobs, near.logprobs):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)
        assert [c.text for c in a.top] == [c.text for c in b.top] and len(a.top) == 3
        assert math.isclose(a.prob, math.exp(a.logprob))


def test_the_remote_engine_checks_the_count_and_has_no_next_tokens(server):
    from kit.errors import BadParameter

    remote = load(MODEL, engine="remote", base_url=server.openai_url, quiet=True)
    with pytest.raises(BadParameter, match="0 to 20"):
        remote.generate("Hi", logprobs=True, top_logprobs=21)
    with pytest.raises(NoProbabilities, match="logprobs=True"):
        remote.next_tokens("Hi")
