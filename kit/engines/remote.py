"""The remote engine: a model served by an OpenAI-compatible server.

Ollama (port 11434), LM Studio (1234), llamafile and llama.cpp's server
(8080) all speak the same protocol: POST /v1/completions for plain text,
/v1/chat/completions for conversations (the server applies the chat
template), streamed as server-sent events. The figures are measured here, on
the client: time to first token includes the network and the server's queue.

tokenize() asks the server (llama-cpp-python's /extras/tokenize, llama.cpp's
/tokenize); servers without such an endpoint (Ollama, LM Studio) raise, and
count_tokens() then estimates about 4 characters per token.

>>> model = RemoteEngine(base_url="http://127.0.0.1:11434")   # Ollama
>>> print(model.chat([{"role": "user", "content": "Hi"}]).text)
"""
from __future__ import annotations

import os
import time

from kit.engines.base import Clock, Engine, Sampling, StopScanner, Stream, halt_reason
from kit.errors import RemoteError

DEFAULT_URL = "http://127.0.0.1:8080"
KNOWN_PORTS = {11434: "Ollama", 1234: "LM Studio", 8080: "llama.cpp / llamafile"}
CONNECT_TIMEOUT = 3.0
CONNECTION_ERROR = (
    "Cannot reach a model server at {url} ({reason}). Is it running? Start it "
    "(Ollama: `ollama serve`; LM Studio: Developer > Start Server; llama.cpp: "
    "`python -m llama_cpp.server --model FILE --host 127.0.0.1 --port 8080`) "
    "and check the address: Ollama uses port 11434, LM Studio 1234, llamafile "
    "and llama.cpp 8080."
)
BAD_ANSWER = (
    "The server at {url} did not answer like an OpenAI-compatible model server "
    "({problem}). Check that the address points at Ollama, LM Studio, "
    "llamafile or llama.cpp's server, and not at another program."
)
FINISH = {"stop": "eos", "length": "length", "eos": "eos"}
# What OpenAI's client sends as named arguments; the rest goes in extra_body.
OPENAI_FIELDS = ("model", "prompt", "messages", "stream", "max_tokens", "temperature",
                 "top_p", "seed", "stop", "stream_options", "logprobs", "top_logprobs")


def _normalize(url: str) -> str:
    url = (url or DEFAULT_URL).strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url.removesuffix("/v1")


class RemoteEngine(Engine):
    engine_name = "remote"
    capabilities = {"chat_template": True, "gpu_offload": True, "streaming": True,
                    "tools": "server"}

    def __init__(self, name: str | None = None, base_url: str | None = None, *,
                 api_key: str | None = None, n_ctx: int = 2048,
                 read_timeout: float = 60.0, connect_timeout: float = CONNECT_TIMEOUT):
        import httpx

        self.base_url = _normalize(base_url or os.environ.get("KIT_REMOTE_URL", ""))
        # The key is kept out of repr() and every message.
        key = api_key or os.environ.get("KIT_REMOTE_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, trust_env=False,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout))
        self.read_timeout, self.connect_timeout = read_timeout, connect_timeout
        self._key, self._oai = key, None
        t0 = time.perf_counter()
        listed = self._json("GET", "/v1/models").get("data")
        if not isinstance(listed, list):
            raise self._bad("GET /v1/models has no 'data' list")
        ids = [m.get("id") for m in listed if isinstance(m, dict)]
        if name in (None, "", "default"):
            if not ids:
                raise RemoteError(f"The server at {self.base_url} has no model "
                                  "loaded. Load one there first.")
            name = ids[0]
        self.server_models = ids
        self.load_s = time.perf_counter() - t0
        self._openai()  # now, so that no answer's figures include importing it
        super().__init__(name, self.base_url, n_ctx)
        self.on_gpu = False  # the server decides; the client cannot tell
        self.version = _version()
        self._tokenize_path: str | None = None

    def __repr__(self) -> str:
        return f"<RemoteEngine {self.name} at {self.base_url}>"

    def describe(self) -> str:
        port = int(self.base_url.rsplit(":", 1)[-1]) if self.base_url.count(":") > 1 \
            else None
        kind = KNOWN_PORTS.get(port, "an OpenAI-compatible server")
        return f"remote, {kind} at {self.base_url}"

    def close(self) -> None:
        self._client.close()
        if self._oai is not None:
            self._oai.close()

    # -- plumbing -----------------------------------------------------------
    def _bad(self, problem: str) -> RemoteError:
        return RemoteError(BAD_ANSWER.format(url=self.base_url, problem=problem))

    def _fail(self, exc) -> RemoteError:
        """A connection problem (httpx's, or the one under OpenAI's client)."""
        kinds = {c.__name__ for c in type(exc).__mro__}  # httpx and httpx2 alike
        if "TimeoutException" in kinds:
            reason = (f"no connection within {self.connect_timeout:g} s"
                      if "ConnectTimeout" in kinds
                      else f"no answer within {self.read_timeout:g} s")
        elif "ConnectError" in kinds:
            reason = "connection refused" if "refused" in str(exc).lower() \
                else f"cannot connect: {exc}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        return RemoteError(CONNECTION_ERROR.format(url=self.base_url, reason=reason))

    def _refused(self, status: int) -> RemoteError | None:
        if status in (401, 403):
            return RemoteError(f"The server at {self.base_url} refused the request "
                               f"(HTTP {status}): it wants an API key. "
                               "Pass api_key=... or set KIT_REMOTE_API_KEY.")
        return None

    def _json(self, method: str, path: str, body: dict | None = None) -> dict:
        import httpx

        try:
            answer = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise self._fail(exc) from exc
        if self._refused(answer.status_code):
            raise self._refused(answer.status_code)
        if answer.status_code >= 400:
            raise self._bad(f"{method} {path} gave HTTP {answer.status_code}: "
                            f"{answer.text[:200]!r}")
        try:
            data = answer.json()
        except ValueError:
            raise self._bad(f"{method} {path} gave text that is not JSON: "
                            f"{answer.text[:80]!r}") from None
        if not isinstance(data, dict):
            raise self._bad(f"{method} {path} gave JSON that is not an object")
        return data

    # -- tokens -------------------------------------------------------------
    def tokenize(self, text: str) -> list[int]:
        """Token ids from the server's own tokenizer (if it offers one)."""
        tries = [self._tokenize_path] if self._tokenize_path else \
            ["/extras/tokenize", "/tokenize"]
        for path in tries:
            body = {"input": text, "model": self.name} if path.startswith("/extras") \
                else {"content": text}
            try:
                tokens = self._json("POST", path, body).get("tokens")
            except RemoteError as exc:
                if "Cannot reach" in str(exc):
                    raise
                continue
            if isinstance(tokens, list):
                self._tokenize_path = path
                return tokens
        raise RemoteError(f"The server at {self.base_url} offers no tokenizer "
                          "endpoint, so exact token ids are unknown; "
                          "count_tokens() gives an estimate instead.")

    def count_tokens(self, text: str) -> int:
        try:
            return len(self.tokenize(text))
        except RemoteError as exc:
            if "Cannot reach" in str(exc):
                raise
            return max(1, round(len(text) / 4))  # rough rule for English text

    def embed(self, texts, **options):
        """Vectors from the server's /v1/embeddings; see kit.engines.embed."""
        from kit.engines.embed import embed_remote

        return embed_remote(self, texts, **options)

    def next_tokens(self, text_or_messages, k: int = 10):
        from kit.errors import NoProbabilities

        raise NoProbabilities(
            "A server reports probabilities only for the tokens it writes: ask "
            "generate() or chat() with logprobs=True, top_logprobs=5 for each "
            "written token and its 5 likeliest alternatives. The whole table of next "
            "tokens needs the model here: kit.load(name) (the llama.cpp engine).")

    # -- generation -----------------------------------------------------------
    def generate(self, prompt, sampling=None, **kw) -> Stream:
        top = _probs_asked(kw)  # the server's token probabilities, if asked
        s = Sampling.make(sampling, **kw)
        extra = {"prompt": prompt} | ({} if top is None else {"logprobs": top})
        return Stream(lambda st: self._run("/v1/completions", extra, s, st, top))

    def chat(self, messages, sampling=None, tools=None, tool_choice="auto",
             **kw) -> Stream:
        if tools is not None:  # tool calling: kit.tools (notebook 09) says what can
            from kit.engines.tool_calls import tool_chat

            return tool_chat(self, messages, tools, tool_choice, sampling, **kw)
        top = _probs_asked(kw)
        s = Sampling.make(sampling, **kw)
        body = {"messages": [dict(m) for m in messages]}
        if top is not None:
            body |= {"logprobs": True, "top_logprobs": top}
        return Stream(lambda st: self._run("/v1/chat/completions", body, s, st, top))

    def _body(self, extra: dict, s: Sampling) -> dict:
        body = {"model": self.name, "stream": True, "max_tokens": s.max_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k,
                "min_p": s.min_p, "repeat_penalty": s.repeat_penalty,
                "stream_options": {"include_usage": True}, **extra}
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        return body

    def _openai(self):
        """OpenAI's own client for the streams (made once, on first use)."""
        if self._oai is None:
            import openai

            # An explicit key (or a placeholder that is never sent): the client
            # must not pick up OPENAI_API_KEY and hand it to a room's server.
            self._oai = openai.OpenAI(
                api_key=self._key or "unused", base_url=self.base_url + "/v1",
                max_retries=0, http_client=openai.DefaultHttpxClient(trust_env=False),
                timeout=openai.Timeout(self.read_timeout, connect=self.connect_timeout))
        return self._oai

    def _open_stream(self, path: str, extra: dict, s: Sampling):
        """The server's streamed answer, opened (a context manager)."""
        import openai

        body = self._body(extra, s)
        known = {k: body.pop(k) for k in OPENAI_FIELDS if k in body}
        api = self._openai()
        api = api.chat.completions if path.endswith("/chat/completions") else \
            api.completions
        return api.with_streaming_response.create(
            **known, extra_body=body,
            extra_headers={} if self._key else {"Authorization": openai.omit})

    def _run(self, path: str, extra: dict, s: Sampling, stream: Stream, top=None):
        import openai

        st = stream.stats
        if top is not None:
            stream.logprobs = []
        scanner = StopScanner(s.stop)  # servers differ on stop strings: check too
        clock = Clock()
        chunks, usage, reason, seen = 0, None, "cut", False  # until the server says
        try:
            with self._open_stream(path, extra, s) as answer:
                if "text/event-stream" not in answer.headers.get("content-type", ""):
                    _check_events(answer.read(), self._bad)  # no SSE type: look
                for event in answer.parse():
                    choices = getattr(event, "choices", None)
                    if not isinstance(choices, list):
                        raise self._bad("a streamed event is not a JSON object")
                    seen = True
                    usage = getattr(event, "usage", None) or usage
                    for choice in choices:
                        if top is not None:  # before the text: Stream pairs them
                            stream.logprobs += _token_probs(getattr(choice, "logprobs",
                                                                    None))
                        piece = getattr(choice, "text", None)
                        if piece is None:
                            piece = getattr(getattr(choice, "delta", None), "content",
                                            None)
                        if piece:
                            clock.tick()
                            chunks += 1
                            out = scanner.feed(piece)
                            if out:
                                yield out
                        if choice.finish_reason:
                            reason = FINISH.get(choice.finish_reason, choice.finish_reason)
                    if halted := halt_reason(scanner, stream):
                        reason = halted
                        break
        except openai.APIConnectionError as exc:  # timeouts included
            raise self._fail(exc.__cause__ or exc) from exc
        except openai.APIStatusError as exc:
            raise self._refused(exc.status_code) or self._bad(
                f"POST {path} gave HTTP {exc.status_code}: "
                f"{exc.response.text[:200]!r}") from None
        except openai.APIError as exc:  # an error event inside the stream
            raise self._bad(f"the server reported an error: {str(exc)[:200]}") from None
        except ValueError as exc:  # an event that is not JSON
            raise self._bad(f"a streamed event is not JSON ({exc})") from None
        if not seen:
            raise self._bad("the stream ended without any answer")
        tail = scanner.flush() if not scanner.hit else ""
        if tail:
            yield tail
        if top is not None and not stream.logprobs:
            st.notices.append("The server sent no token probabilities (it may not "
                              "support logprobs).")
        done = getattr(usage, "completion_tokens", None)
        if isinstance(done, int):
            st.generated_tokens = done
            st.prompt_tokens = getattr(usage, "prompt_tokens", None) or 0
        else:
            st.generated_tokens = chunks
            st.notices.append("The server sent no token counts; each streamed "
                              "piece was counted as one token.")
        clock.finish(st, reason, st.prompt_tokens)


def _probs_asked(kw: dict) -> int | None:
    """None, or how many alternatives per token (logprobs=/top_logprobs=)."""
    want, top = kw.pop("logprobs", None), kw.pop("top_logprobs", None)
    if not want and not top:
        return None
    if top is not None and (isinstance(top, bool) or not isinstance(top, int)
                            or not 0 <= top <= 20):
        from kit.errors import BadParameter

        raise BadParameter("top_logprobs", top, "a whole number from 0 to 20 "
                           "(what OpenAI-compatible servers accept)")
    return top or 0


def _token_probs(lp) -> list:
    """kit.probs.TokenProb from an event's logprobs, in either OpenAI shape
    (chat: content=[{token, logprob, bytes, top_logprobs}]; completions:
    tokens, token_logprobs, top_logprobs=[{text: logprob}]). Token ids are
    the server's own business: -1 here."""
    import math

    from kit.probs import Candidate, TokenProb

    def as_dict(x):
        return x if isinstance(x, dict) else (x.model_dump() if hasattr(x, "model_dump")
                                              else dict(getattr(x, "__dict__", {})))

    def cand(e) -> Candidate:
        e = as_dict(e)
        text, lp_ = e.get("token") or "", float(e.get("logprob") or 0.0)
        raw = bytes(e.get("bytes") or b"") or text.encode("utf-8")
        return Candidate(text, -1, math.exp(lp_), lp_, raw)

    if lp is None:
        return []
    lp = as_dict(lp)
    if lp.get("content") is not None:  # chat
        return [TokenProb(**vars(cand(e)), top=[cand(t) for t in
                                                 (as_dict(e).get("top_logprobs") or [])])
                for e in lp["content"]]
    out = []
    tops = lp.get("top_logprobs") or []
    for i, (text, value) in enumerate(zip(lp.get("tokens") or [],
                                          lp.get("token_logprobs") or [])):
        alts = tops[i] if i < len(tops) and isinstance(tops[i], dict) else {}
        out.append(TokenProb(text, -1, math.exp(value or 0.0), float(value or 0.0),
                             text.encode("utf-8"),
                             [Candidate(t, -1, math.exp(v), v, t.encode("utf-8"))
                              for t, v in alts.items()]))
    return out


def _check_events(body: bytes, bad) -> None:
    """Refuse a body that is not server-sent events ('data: ...' lines)."""
    first = next((line.strip() for line in body.splitlines() if line.strip()), b"")
    if first and not first.startswith((b"data:", b"event:", b"id:", b"retry:", b":")):
        raise bad("expected streamed events ('data: ...'), got "
                  f"{first[:80].decode('utf-8', 'replace')!r}")


def _version() -> str:
    from importlib import metadata

    try:
        return "openai " + metadata.version("openai")
    except metadata.PackageNotFoundError:
        return "?"
