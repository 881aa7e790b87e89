"""The OpenAI API: /v1/models, /v1/chat/completions, /v1/completions.

Request bodies reuse llama-cpp-python's own pydantic types (its server speaks
the same API), with the newer fields OpenAI's client sends added.

>>> from openai import OpenAI
>>> client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
>>> client.chat.completions.create(model="smollm2:135m", messages=[...])
"""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Literal, Optional, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from llama_cpp.server.types import (CreateChatCompletionRequest, CreateCompletionRequest,
                                    DetokenizeInputRequest, TokenizeInputRequest)
from pydantic import BaseModel, Field

from kit.errors import BadSchema
from kit.server import logprobs_api, tools_api
from kit.server.answer import begin, finish_reason
from kit.server.models import BadRequest, error_status, needs_schema_support
from kit.server.presets import preset

router = APIRouter(prefix="/v1")
extras = APIRouter(prefix="/extras")  # llama-cpp-python's tokenizer endpoints

class JsonSchemaSpec(BaseModel):
    name: Optional[str] = None
    description: Optional[str] = None
    schema_: Optional[dict] = Field(default=None, alias="schema")
    strict: Optional[bool] = None
    model_config = {"populate_by_name": True}


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaSpec] = None
    schema_: Optional[dict] = Field(default=None, alias="schema")  # llama.cpp's form
    model_config = {"populate_by_name": True}


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[dict], None] = None
    name: Optional[str] = None
    tool_calls: Optional[list[dict]] = None  # an assistant's calls (kit.server.tools_api)
    tool_call_id: Optional[str] = None  # a tool's result answers this call


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(CreateChatCompletionRequest):
    messages: list[Message] = Field(min_length=1)
    response_format: Optional[ResponseFormat] = None
    stream_options: Optional[StreamOptions] = None
    max_completion_tokens: Optional[int] = Field(default=None, ge=0)
    parallel_tool_calls: Optional[bool] = None


class CompletionRequest(CreateCompletionRequest):
    max_tokens: Optional[int] = Field(default=16, ge=0)  # 0: until the model stops
    stream_options: Optional[StreamOptions] = None


def _text(content) -> str:
    """Message content as text; parts other than text are refused."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.get("type") != "text":
            raise BadRequest(f"Message parts of type {part.get('type')!r} are not "
                             "supported: this server handles text only.")
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def _schema(fmt: ResponseFormat | None):
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_schema":
        if fmt.json_schema is None or fmt.json_schema.schema_ is None:
            raise BadSchema("response_format type 'json_schema' needs "
                            "json_schema.schema")
        return fmt.json_schema.schema_
    return fmt.schema_ or "json"


# Fields of OpenAI's API this server does not implement (yet): refused, never
# silently ignored. Remove a name here when its route learns it.
UNSUPPORTED = {
    "grammar": "send a JSON schema as response_format instead of a grammar",
}


def refuse_unsupported(body) -> None:
    """A clear 400 for a field the server would otherwise quietly ignore."""
    for field, why in UNSUPPORTED.items():
        value = getattr(body, field, None)
        if value not in (None, False):
            raise BadRequest(f"{field} is not supported: {why}. Leave it out.")


def _sampling(body, n_ctx: int, max_tokens) -> dict:
    if (body.n or 1) != 1:
        raise BadRequest("n must be 1: this server returns one answer per request.")
    stop = body.stop
    return dict(temperature=body.temperature, top_p=body.top_p, top_k=body.top_k,
                min_p=body.min_p, repeat_penalty=body.repeat_penalty, seed=body.seed,
                max_tokens=max_tokens or n_ctx,
                stop=(stop,) if isinstance(stop, str) else tuple(stop or ()))


def _preset_for(name: str, body, sampling: dict):
    """A created model's preset (kit.server.presets) and the sampling with its
    options wherever the request set none."""
    made_for = preset(name)
    sent = body.model_fields_set
    named = {k for k in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                         "seed", "stop") if k in sent}
    if sent & {"max_tokens", "max_completion_tokens"}:
        named.add("max_tokens")
    return made_for, made_for.sampling(sampling, named)


def _usage(stats) -> dict:
    return {"prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.generated_tokens,
            "total_tokens": stats.prompt_tokens + stats.generated_tokens}


@router.get("/models")
async def list_models(request: Request):
    pool = request.app.state.pool
    data = []
    for name, path in pool.offered.items():
        try:
            import os

            created = int(os.path.getmtime(path))
        except OSError:
            created = 0
        data.append({"id": name, "object": "model", "created": created,
                     "owned_by": "kit"})
    return {"object": "list", "data": data}


@router.get("/models/{name:path}")
async def one_model(name: str, request: Request):
    pool = request.app.state.pool
    name = pool.canonical(name)
    return {"id": name, "object": "model", "created": 0, "owned_by": "kit"}


async def _answer(request, pool, name, make_stream, stream: bool, chunk, final,
                  include_usage: bool):
    """Run a generation; return JSON, or server-sent events when streaming."""
    from sse_starlette.sse import EventSourceResponse

    answer = await begin(request, pool, name, make_stream)
    if not stream:
        return JSONResponse(final(*await answer.collect()))

    async def events():
        try:
            yield {"data": json.dumps(chunk(None, None))}  # the role comes first
            async for kind, value in answer.events():
                if kind == "piece":
                    yield {"data": json.dumps(chunk(value, None))}
                elif kind == "error":
                    yield {"data": json.dumps({"error": {
                        "message": str(value), "type": "server_error",
                        "code": error_status(value)}})}
                else:
                    yield {"data": json.dumps(chunk(None, finish_reason(value)))}
                    if include_usage:
                        yield {"data": json.dumps({**chunk(None, None), "choices": [],
                                                   "usage": _usage(value)})}
                    yield {"data": "[DONE]"}
        finally:
            answer.cancel()  # the client may leave before the first piece

    return EventSourceResponse(events(), ping=15)


@router.post("/chat/completions")
async def chat_completions(body: ChatRequest, request: Request):
    pool = request.app.state.pool
    name = pool.canonical(body.model)
    refuse_unsupported(body)
    if body.functions:
        raise BadRequest("functions (OpenAI's older form) are not supported; send "
                         "the same schemas as tools.")
    messages = tools_api.messages_in(body.messages, _text)
    tools = tools_api.chat_options(body.tools, body.tool_choice, body.parallel_tool_calls)
    schema = _schema(body.response_format)
    if tools and schema is not None:
        raise BadRequest("Send tools or response_format, not both.")
    sampling = _sampling(body, pool.n_ctx, body.max_completion_tokens or body.max_tokens)
    made_for, sampling = _preset_for(name, body, sampling)  # a model made by /api/create
    messages = made_for.messages(messages)
    extra = {"json_schema": schema} if schema is not None else {}
    extra.update(logprobs_api.options(body.logprobs, body.top_logprobs, "chat"))
    if tools and "logprobs" in extra:
        raise BadRequest("logprobs are not returned with tools: ask for one or the other.")
    rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    made = {}  # the model's stream, to read its tool calls at the end
    pieces = logprobs_api.Pieces(made)  # each piece's token probabilities

    def make_stream(model):
        needs_schema_support(model, schema)
        made["stream"] = model.chat(messages, **sampling, **extra, **tools)
        return made["stream"]

    def chunk(piece, finish):
        delta = ({"content": piece} if piece is not None
                 else {} if finish else {"role": "assistant", "content": ""})
        if finish and tools_api.called(made.get("stream")):
            delta = {"tool_calls": tools_api.openai_deltas(made["stream"])}
            finish = tools_api.TOOL_FINISH
        return {"id": rid, "object": "chat.completion.chunk", "created": created,
                "model": name, "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs":
                             logprobs_api.openai_chat(pieces.next())
                             if piece is not None else None,
                             "finish_reason": finish}]}

    def final(text, stats):
        message, reason = {"role": "assistant", "content": text}, finish_reason(stats)
        if tools_api.called(made.get("stream")):
            message = {"role": "assistant", "content": text or None,
                       "tool_calls": tools_api.openai_calls(made["stream"])}
            reason = tools_api.TOOL_FINISH
        return {"id": rid, "object": "chat.completion", "created": created,
                "model": name, "system_fingerprint": None,
                "choices": [{"index": 0, "message": message,
                             "logprobs": logprobs_api.openai_chat(pieces.all()),
                             "finish_reason": reason}],
                "usage": _usage(stats)}

    include = bool(body.stream_options and body.stream_options.include_usage)
    return await _answer(request, pool, name, make_stream, body.stream, chunk, final,
                         include)


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request):
    pool = request.app.state.pool
    name = pool.canonical(body.model)
    refuse_unsupported(body)
    prompt = body.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise BadRequest("Send one prompt per request (a string, or a list "
                             "holding one string).")
        prompt = prompt[0]
    if not isinstance(prompt, str) or not (prompt or body.suffix):
        raise BadRequest("The prompt is empty: send the text to continue as "
                         "\"prompt\".")
    sampling = _preset_for(name, body, _sampling(body, pool.n_ctx, body.max_tokens))[1]
    rid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    echo = prompt if body.echo else ""
    probs = logprobs_api.options(body.logprobs is not None, body.logprobs, "completions")
    made, sent = {}, {"chars": len(echo)}  # the model's stream; text sent so far
    pieces = logprobs_api.Pieces(made)

    def make_stream(model):  # with a suffix, or in the FIM layout: fill the middle
        fim = tools_api.fim_stream(model, prompt, body.suffix, sampling)
        made["stream"] = fim if fim is not None else model.generate(prompt, **sampling,
                                                                    **probs)
        return made["stream"]

    def chunk(piece, finish):
        logprobs = None
        if piece is None and finish is None:
            piece = echo  # the opening event carries the echoed prompt, if any
        elif piece is not None:
            logprobs = logprobs_api.openai_completion(pieces.next(), sent["chars"])
            sent["chars"] += len(piece)
        return {"id": rid, "object": "text_completion", "created": created,
                "model": name, "choices": [{"index": 0, "text": piece or "",
                                            "logprobs": logprobs,
                                            "finish_reason": finish}]}

    def final(text, stats):
        return {"id": rid, "object": "text_completion", "created": created,
                "model": name,
                "choices": [{"index": 0, "text": echo + text,
                             "logprobs": logprobs_api.openai_completion(pieces.all(),
                                                                        len(echo)),
                             "finish_reason": finish_reason(stats)}],
                "usage": _usage(stats)}

    include = bool(body.stream_options and body.stream_options.include_usage)
    return await _answer(request, pool, name, make_stream, body.stream, chunk, final,
                         include)


@extras.post("/tokenize")
async def tokenize(body: TokenizeInputRequest, request: Request):
    """The token ids the model sees (as kit's model.tokenize gives them)."""
    pool = request.app.state.pool
    model, _ = await pool.ensure(request, pool.canonical(body.model))
    return {"tokens": await asyncio.to_thread(model.tokenize, body.input)}


@extras.post("/detokenize")
async def detokenize(body: DetokenizeInputRequest, request: Request):
    pool = request.app.state.pool
    model, _ = await pool.ensure(request, pool.canonical(body.model))
    n_vocab = getattr(getattr(model, "facts", None), "vocab_size", None)
    if not hasattr(model, "detokenize") or not n_vocab:
        raise BadRequest(f"The {model.engine_name} engine cannot turn tokens back "
                         "into text.")
    bad = [t for t in body.tokens if not 0 <= t < n_vocab]
    if bad:  # never hand llama.cpp an id outside its vocabulary
        raise BadRequest(f"Token ids must be from 0 to {n_vocab - 1}; got {bad[:5]}.")
    return {"text": model.detokenize(body.tokens)}
