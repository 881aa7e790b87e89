"""The Ollama API: /api/tags, /api/show, /api/ps, /api/generate, /api/chat.

Answers stream as newline-delimited JSON (one object per line) unless the
request says "stream": false, and end with Ollama's figures in nanoseconds.

>>> import ollama
>>> ollama.Client(host="http://127.0.0.1:8000").chat(model="smollm2:135m", ...)
"""
from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any, Literal, Optional, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from kit.server import keepalive, logprobs_api, tools_api
from kit.server.answer import begin, finish_reason
from kit.server.models import BadRequest, error_status, needs_schema_support
from kit.server.presets import Preset, modelfile_lines, preset

router = APIRouter(prefix="/api")

class Options(BaseModel):
    """The options the kit honours; Ollama's others are accepted and ignored."""

    temperature: Optional[float] = None
    top_p: Optional[float] = None
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    repeat_penalty: Optional[float] = None
    seed: Optional[int] = None
    num_predict: Optional[int] = None
    num_ctx: Optional[int] = Field(default=None, ge=16)
    stop: Optional[Union[str, list[str]]] = None
    model_config = {"extra": "allow"}


Format = Union[Literal["", "json"], dict, None]


class GenerateRequest(BaseModel):
    model: str = Field(min_length=1)
    prompt: str = ""
    system: Optional[str] = None
    suffix: Optional[str] = None
    raw: bool = False
    stream: bool = True
    format: Format = None
    options: Optional[Options] = None
    images: Optional[list[Any]] = None
    keep_alive: Any = None
    logprobs: bool = False
    top_logprobs: Optional[int] = None
    think: Union[bool, str, None] = None  # refused: no model here thinks yet
    model_config = {"extra": "allow"}


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: Optional[str] = ""
    images: Optional[list[Any]] = None
    tool_calls: Optional[list[Any]] = None  # an assistant's calls (kit.server.tools_api)
    tool_name: Optional[str] = None  # a tool's result names its tool


class ChatRequest(BaseModel):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = []
    stream: bool = True
    format: Format = None
    options: Optional[Options] = None
    tools: Optional[list[Any]] = None
    keep_alive: Any = None
    logprobs: bool = False
    top_logprobs: Optional[int] = None
    think: Union[bool, str, None] = None
    model_config = {"extra": "allow"}


class ShowRequest(BaseModel):
    model: Optional[str] = None
    name: Optional[str] = None  # older clients send "name"
    verbose: bool = False


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _details(facts) -> dict:
    n = facts.parameters or 0
    size = f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"
    return {"parent_model": "", "format": "gguf", "family": facts.architecture,
            "families": [facts.architecture], "parameter_size": size,
            "quantization_level": facts.quantization}


def _entry(pool, name: str) -> dict:
    import os

    path = pool.offered[name]
    st = os.stat(path)
    digest = ""
    from kit.models.registry import installed

    digest = (installed().get(name) or {}).get("sha256") or ""
    return {"name": name, "model": name, "size": st.st_size,
            "modified_at": dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc)
            .isoformat().replace("+00:00", "Z"),
            "digest": digest, "details": _details(pool.facts(name))}


@router.get("/version")
async def version():
    from kit import __version__

    return {"version": __version__}


@router.get("/tags")
async def tags(request: Request):
    pool = request.app.state.pool
    return {"models": [_entry(pool, n) for n in pool.offered]}


@router.get("/ps")
async def ps(request: Request):
    pool = request.app.state.pool
    out = []
    for slot in pool.loaded(request):  # a room key: its own models
        out.append({**_entry(pool, slot.name), "size": slot.bytes_needed,
                    "size_vram": 0, "context_length": slot.n_ctx,
                    "expires_at": keepalive.iso(keepalive.expires_at(slot))})
    return {"models": out}


@router.post("/show")
async def show(body: ShowRequest, request: Request):
    pool = request.app.state.pool
    name = pool.canonical(body.model or body.name or "", request)
    facts = pool.facts(name)
    arch = facts.architecture
    info = {"general.architecture": arch, "general.parameter_count": facts.parameters,
            f"{arch}.context_length": facts.context_length,
            f"{arch}.embedding_length": facts.embedding_length,
            f"{arch}.block_count": facts.block_count}
    made = modelfile_lines(name)  # a model made with /api/create: its preset
    return {"modelfile": f"# served by the kit\nFROM {pool.offered[name]}\n"
            + "".join(line + "\n" for line in made),
            "parameters": "\n".join(line.split(" ", 1)[1] for line in made
                                     if line.startswith("PARAMETER ")),
            "system": preset(name).system or "",
            "template": facts.chat_template or "",
            "details": _details(facts), "model_info": info,
            "capabilities": ["completion"],
            "modified_at": _entry(pool, name)["modified_at"]}


def _sampling(options: Options | None, n_ctx: int) -> dict:
    o = options or Options()
    predict = o.num_predict
    stop = o.stop
    return dict(temperature=o.temperature, top_p=o.top_p, top_k=o.top_k, min_p=o.min_p,
                repeat_penalty=o.repeat_penalty, seed=o.seed,
                # Ollama's -1 (or unset) means "until the model stops or the
                # context is full"; the engine stops at the context anyway.
                max_tokens=n_ctx if predict is None or predict < 1 else predict,
                stop=(stop,) if isinstance(stop, str) else tuple(stop or ()))


def _schema(fmt):
    return None if fmt in (None, "") else fmt


def _figures(stats, t0: float, load_s: float) -> dict:
    ns = lambda s: int(s * 1e9)  # noqa: E731
    return {"done": True, "done_reason": finish_reason(stats),
            "total_duration": ns(time.perf_counter() - t0), "load_duration": ns(load_s),
            "prompt_eval_count": stats.prompt_tokens,
            "prompt_eval_duration": ns(stats.ttft_s),
            "eval_count": stats.generated_tokens,
            "eval_duration": ns(max(0.0, stats.total_s - stats.ttft_s))}


async def _answer(request, pool, name, make_stream, n_ctx, stream, wrap, t0,
                  pieces=None):
    """pieces: a logprobs_api.Pieces when the request asked for logprobs."""
    answer = await begin(request, pool, name, make_stream, n_ctx=n_ctx)
    probs = (lambda tokens: logprobs_api.ollama(tokens)) if pieces else (lambda _: {})
    if not stream:
        text, stats = await answer.collect()
        return JSONResponse({**wrap(text), **_figures(stats, t0, answer.load_s),
                             **probs(pieces and pieces.all())})

    async def lines():
        async for kind, value in answer.events():
            if kind == "piece":
                yield json.dumps({**wrap(value), "done": False,
                                  **probs(pieces and pieces.next())}) + "\n"
            elif kind == "error":  # Ollama's clients raise on an "error" line
                yield json.dumps({"error": str(value),
                                  "status": error_status(value)}) + "\n"
            else:
                end = _figures(value, t0, answer.load_s)
                yield json.dumps({**wrap(""), **end}) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def _just_load(request, pool, name, n_ctx, wrap, t0):
    """An empty prompt loads the model and answers at once (as Ollama does)."""
    _, load_s = await pool.ensure(request, name, n_ctx)
    ns = int((time.perf_counter() - t0) * 1e9)
    return JSONResponse({**wrap(""), "done": True, "done_reason": "load",
                         "total_duration": ns, "load_duration": int(load_s * 1e9)})


def _unloaded(pool, name, wrap):
    """keep_alive 0 without a prompt: unload now (after any answer running)."""
    keepalive.stop(pool, name)
    return JSONResponse({**wrap(""), "done": True, "done_reason": "unload"})


def _refuse_images(images) -> None:
    if images:
        raise BadRequest("Images are not supported: this server handles text only.")


def _refuse_think(name: str, think) -> None:
    """think=True (or a level) gets Ollama's answer for a model that cannot think."""
    if think not in (None, False):
        raise BadRequest(f'"{name}" does not support thinking: no model the kit '
                         "serves reasons before it answers yet. Leave think out (or "
                         "send think=false).")


def _with_preset(name: str, options: Options | None) -> tuple[Preset, Options]:
    """A created model's preset (kit.server.presets), and the request's options
    over the preset's."""
    made_for = preset(name)
    sent = options.model_dump(exclude_unset=True) if options else {}
    return made_for, Options(**made_for.ollama_options(sent))


@router.post("/generate")
async def generate(body: GenerateRequest, request: Request):
    t0 = time.perf_counter()
    pool = request.app.state.pool
    name = pool.canonical(body.model, request)  # before keep_alive: the key's models
    _refuse_images(body.images)
    _refuse_think(name, body.think)
    made_for, options = _with_preset(name, body.options)
    n_ctx = options.num_ctx or pool.n_ctx
    sampling, schema = _sampling(options, n_ctx), _schema(body.format)
    probs = logprobs_api.options(body.logprobs, body.top_logprobs, "generate")
    made = {}  # the model's stream, for its token probabilities
    pieces = logprobs_api.Pieces(made) if probs else None

    def wrap(text):
        return {"model": name, "created_at": _now(), "response": text}

    if keepalive.set_keep(pool, name, n_ctx, body.keep_alive) == 0 and not body.prompt:
        return _unloaded(pool, name, wrap)  # `ollama stop`, `kit stop`
    if not body.prompt:
        return await _just_load(request, pool, name, n_ctx, wrap, t0)

    def make_stream(model):
        needs_schema_support(model, schema)
        extra = {"json_schema": schema} if schema is not None else {}
        fim = tools_api.fim_stream(model, body.prompt, body.suffix, sampling) \
            if body.suffix or body.raw else None  # fill in the middle
        if fim is not None:
            return fim
        if body.raw:
            made["stream"] = model.generate(body.prompt, **sampling, **extra, **probs)
            return made["stream"]
        messages = ([{"role": "system", "content": body.system}] if body.system else [])
        messages.append({"role": "user", "content": body.prompt})
        messages = made_for.messages(messages)
        made["stream"] = model.chat(messages, **sampling, **extra, **probs)
        return made["stream"]

    return await _answer(request, pool, name, make_stream, n_ctx, body.stream, wrap, t0,
                         pieces)


@router.post("/chat")
async def chat(body: ChatRequest, request: Request):
    t0 = time.perf_counter()
    pool = request.app.state.pool
    name = pool.canonical(body.model, request)  # before keep_alive: the key's models
    for m in body.messages:
        _refuse_images(m.images)
    _refuse_think(name, body.think)
    tools = tools_api.chat_options(body.tools)
    if tools and _schema(body.format) is not None:
        raise BadRequest("Send tools or format, not both.")
    made_for, options = _with_preset(name, body.options)
    n_ctx = options.num_ctx or pool.n_ctx
    sampling, schema = _sampling(options, n_ctx), _schema(body.format)
    probs = logprobs_api.options(body.logprobs, body.top_logprobs, "chat")
    if tools and probs:
        raise BadRequest("logprobs are not returned with tools: ask for one or the other.")

    made = {}  # the model's stream, to read its tool calls at the end
    pieces = logprobs_api.Pieces(made) if probs else None

    def wrap(text):
        message = {"role": "assistant", "content": text}
        answer = made.get("stream")
        if answer is not None and answer.done and tools_api.called(answer):
            message["tool_calls"] = tools_api.ollama_calls(answer)
        return {"model": name, "created_at": _now(), "message": message}

    if keepalive.set_keep(pool, name, n_ctx, body.keep_alive) == 0 and not body.messages:
        return _unloaded(pool, name, wrap)
    if not body.messages:
        return await _just_load(request, pool, name, n_ctx, wrap, t0)
    messages = made_for.messages(tools_api.messages_in(body.messages))

    def make_stream(model):
        needs_schema_support(model, schema)
        extra = {"json_schema": schema} if schema is not None else {}
        made["stream"] = model.chat(messages, **sampling, **extra, **tools, **probs)
        return made["stream"]

    return await _answer(request, pool, name, make_stream, n_ctx, body.stream, wrap, t0,
                         pieces)
