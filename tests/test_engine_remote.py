"""The remote engine against a real OpenAI-compatible server on loopback.

The server is llama-cpp-python's own (`python -m llama_cpp.server`) serving
the starter model; beside it, tiny servers that answer garbage or nothing.
"""
import http.server
import json
import socket
import threading
import time

import pytest

from kit.engines import load
from kit.engines.llama_server import LlamaServer, free_port
from kit.engines.remote import CONNECTION_ERROR, RemoteEngine, RemoteError

GREEDY = dict(temperature=0, seed=1)
SECRET = "sk-test-do-not-print-0123456789"


@pytest.fixture(scope="module")
def server():
    with LlamaServer("smollm2:135m", n_ctx=1024, n_threads=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def remote(server):
    return load(engine="remote", base_url=server.url, quiet=True)


@pytest.fixture(scope="module")
def local():
    return load("smollm2:135m", n_ctx=1024, n_threads=1, quiet=True)


class _Garbage(http.server.BaseHTTPRequestHandler):
    """Answers every request with 200 and whatever `body` the server holds."""

    def _answer(self):
        self.server.seen.append(self.headers.get("Authorization"))
        body = self.server.bodies.get(self.path, b"<html>It works!</html>")
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def garbage():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    srv.bodies, srv.status, srv.seen = {}, 200, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url_of(srv):
    return f"http://127.0.0.1:{srv.server_address[1]}"


# ---- a real server ------------------------------------------------------------


def test_server_binds_loopback_and_lists_the_model(server, remote):
    assert server.url.startswith("http://127.0.0.1:")
    assert remote.name == "smollm2:135m" and remote.server_models == ["smollm2:135m"]
    assert "OpenAI-compatible server" in remote.describe()


def test_chat_streams_the_same_answer_as_the_local_engine(remote, local):
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    stream = remote.chat(msgs, max_tokens=48, **GREEDY)
    pieces = list(stream)
    # compared with the local engine below; here only: a real, on-topic answer
    assert len(pieces) > 3 and "France" in stream.text
    assert stream.text == local.chat(msgs, max_tokens=48, **GREEDY).text
    st = stream.stats
    assert st.stop_reason in ("eos", "length") and st.generated_tokens >= len(pieces) - 1
    assert 0 < st.ttft_s <= st.total_s and st.gen_tps > 0


def test_completion_matches_and_reports_length(remote, local):
    stream = remote.generate("The three primary colours are", max_tokens=12, **GREEDY)
    assert stream.text == local.generate("The three primary colours are",
                                         max_tokens=12, **GREEDY).text
    assert stream.stats.stop_reason == "length" and stream.stats.generated_tokens == 12


def test_probabilities_from_llama_cpps_own_server(remote):
    stream = remote.generate("The capital of France is", max_tokens=8, logprobs=True,
                             top_logprobs=2, **GREEDY)
    text = stream.text  # the stream runs now; its probabilities come with it
    tokens = stream.logprobs
    assert text and tokens, stream.stats.notices
    assert "".join(t.text for t in tokens) == stream.text
    assert all(t.logprob <= 0 and 0 < t.prob <= 1 for t in tokens)
    assert all(1 <= len(t.top) <= 2 for t in tokens)


def test_a_room_url_makes_the_server_the_default(server, monkeypatch, starter_path):
    """kit hub sets KIT_REMOTE_URL for the learners: notebook 01's kit.load()
    then reaches the room's server, unchanged; a model file stays local."""
    monkeypatch.setenv("KIT_REMOTE_URL", server.url)
    assert isinstance(load(quiet=True), RemoteEngine)
    assert isinstance(load("smollm2:135m", quiet=True), RemoteEngine)
    assert not isinstance(load(str(starter_path), n_ctx=256, quiet=True), RemoteEngine)
    assert not isinstance(load("smollm2:135m", engine="llamacpp", n_ctx=256, quiet=True),
                          RemoteEngine)
    monkeypatch.delenv("KIT_REMOTE_URL")
    assert not isinstance(load("smollm2:135m", n_ctx=256, quiet=True), RemoteEngine)


def test_seed_is_sent(remote):
    kw = dict(temperature=1.0, max_tokens=16)
    a = remote.generate("My favourite animal is", seed=7, **kw).text
    assert remote.generate("My favourite animal is", seed=7, **kw).text == a
    others = {remote.generate("My favourite animal is", seed=s, **kw).text
              for s in (8, 9)}
    assert others - {a}


def test_tokenize_uses_the_servers_tokenizer(remote, local):
    text = "Hello world, it's 2024!"
    assert remote.tokenize(text) == local.tokenize(text, special=True)
    assert remote.count_tokens(text) == len(local.tokenize(text))


def test_stop_string_and_cancel(remote):
    cut = remote.generate("1, 2, 3, 4,", max_tokens=20, stop=[" 6"], **GREEDY)
    assert " 5," in cut.text and " 6" not in cut.text
    stream = remote.generate("Once upon a time", max_tokens=60, **GREEDY)
    for i, _ in enumerate(stream):
        if i == 2:
            stream.cancel()
    assert stream.stats.stop_reason == "cancelled" and len(stream.text) < 60


# ---- servers that are down, silent, or talking nonsense ----------------------


def test_server_down_is_a_clear_error_within_seconds():
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(RemoteError) as info:
        RemoteEngine(base_url=f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 5
    message = str(info.value)
    assert message.startswith(CONNECTION_ERROR.split("{")[0])
    assert f"http://127.0.0.1:{port}" in message and "ollama serve" in message
    assert "11434" in message and "connection refused" in message


def test_silent_server_times_out_instead_of_hanging():
    with socket.socket() as s:  # accepts connections, never answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        t0 = time.monotonic()
        with pytest.raises(RemoteError, match="no answer within 1.5 s"):
            RemoteEngine(base_url=f"http://127.0.0.1:{s.getsockname()[1]}",
                         read_timeout=1.5)
        assert time.monotonic() - t0 < 5


def test_garbage_instead_of_a_model_list(garbage):
    with pytest.raises(RemoteError, match="not JSON.*It works"):
        RemoteEngine(base_url=url_of(garbage))
    garbage.bodies["/v1/models"] = b'{"hello": "world"}'
    with pytest.raises(RemoteError, match="no 'data' list"):
        RemoteEngine(base_url=url_of(garbage))
    garbage.bodies["/v1/models"] = b'{"data": []}'
    with pytest.raises(RemoteError, match="no model loaded"):
        RemoteEngine(base_url=url_of(garbage))


def test_garbage_instead_of_a_stream(garbage):
    garbage.bodies["/v1/models"] = json.dumps({"data": [{"id": "m"}]}).encode()
    model = RemoteEngine(base_url=url_of(garbage))
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match="expected streamed events"):
        model.generate("Hi").text
    garbage.bodies["/v1/completions"] = b"data: {not json}\n\n"
    with pytest.raises(RemoteError, match="not JSON"):
        model.generate("Hi").text
    garbage.bodies["/v1/chat/completions"] = b"data: [DONE]\n\n"
    with pytest.raises(RemoteError, match="ended without any answer"):
        model.chat([{"role": "user", "content": "Hi"}]).text
    assert time.monotonic() - t0 < 5
    with pytest.raises(RemoteError, match="no tokenizer endpoint"):
        model.tokenize("Hi")
    assert model.count_tokens("12345678") == 2  # the estimate: 4 characters


def test_an_answer_cut_off_without_a_reason_says_so(garbage):
    """llama-cpp-python's server, asked with interrupt_requests on, ends a
    stream early without a finish_reason: not "reached max_tokens"."""
    garbage.bodies["/v1/models"] = json.dumps({"data": [{"id": "m"}]}).encode()
    chunk = {"id": "c", "object": "text_completion", "created": 0, "model": "m",
             "choices": [{"index": 0, "text": "Once", "finish_reason": None}]}
    garbage.bodies["/v1/completions"] = (b"data: " + json.dumps(chunk).encode()
                                         + b"\n\ndata: [DONE]\n\n")
    stream = RemoteEngine(base_url=url_of(garbage)).generate("Hi", max_tokens=50)
    assert stream.text == "Once"
    assert stream.stats.stop_reason == "cut" and "without saying why" in stream.stats.line()
    chunk["choices"][0]["finish_reason"] = "length"
    garbage.bodies["/v1/completions"] = (b"data: " + json.dumps(chunk).encode()
                                         + b"\n\ndata: [DONE]\n\n")
    stream = RemoteEngine(base_url=url_of(garbage)).generate("Hi", max_tokens=50)
    stream.text
    assert stream.stats.stop_reason == "length"


def test_api_key_is_sent_but_never_shown(garbage):
    garbage.status = 401
    with pytest.raises(RemoteError) as info:
        RemoteEngine(base_url=url_of(garbage), api_key=SECRET)
    assert "API key" in str(info.value) and SECRET not in str(info.value)
    garbage.status = 200
    garbage.bodies["/v1/models"] = b'{"data": [{"id": "m"}]}'
    model = RemoteEngine(base_url=url_of(garbage), api_key=SECRET)
    assert SECRET not in repr(model) and SECRET not in model.describe()
    assert model._client.headers["Authorization"] == f"Bearer {SECRET}"


def test_streams_never_send_another_services_key(garbage, monkeypatch):
    # The stream goes through OpenAI's client, which would read OPENAI_API_KEY:
    # a learner's real key must never reach a room's server.
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("KIT_REMOTE_API_KEY", raising=False)
    garbage.bodies["/v1/models"] = b'{"data": [{"id": "m"}]}'
    garbage.bodies["/v1/completions"] = (
        b'data: {"choices": [{"index": 0, "text": "Hi", "finish_reason": "stop"}], '
        b'"usage": {"prompt_tokens": 2, "completion_tokens": 1}}\n\ndata: [DONE]\n\n')
    stream = RemoteEngine(base_url=url_of(garbage)).generate("Hello")
    assert stream.text == "Hi" and stream.stats.generated_tokens == 1
    assert stream.stats.stop_reason == "eos" and garbage.seen == [None, None]
