"""OpenAI's Responses API (POST /v1/responses) over the same engines (notebook 07).

`input` is a string or a list of items (messages, `function_call`,
`function_call_output`); `instructions` become the system message;
`max_output_tokens`, `temperature` and `top_p` set the sampling; `text.format`
holds the answer to a JSON schema (so `client.responses.parse(text_format=
Model)` returns a Model); function tools answer with `function_call` items.
`stream=True` sends OpenAI's typed events, response.created ... response.completed.

The server is stateless, as Ollama's is: it keeps no responses, so `store`,
`previous_response_id` and `conversation` are refused with a 400 that says
to send the whole conversation as `input`; built-in tools (web search, file
search ...) are refused too.

>>> client.responses.create(model="smollm2:135m", input="Hello!").output_text
"""
from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, Optional, Union

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from kit.errors import BadSchema
from kit.server import tools_api
from kit.server.answer import begin
from kit.server.models import BadRequest, error_status, needs_schema_support
from kit.server.presets import preset

router = APIRouter(prefix="/v1")
KEEPS_NOTHING = ("This server keeps no responses (it is stateless, as Ollama's is), "
                 "so {what}. Send the whole conversation as input instead: the "
                 "earlier input items, then the previous response's output items, "
                 "then the new message.")


class TextFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    name: Optional[str] = None
    description: Optional[str] = None
    schema_: Optional[dict] = Field(default=None, alias="schema")
    strict: Optional[bool] = None
    model_config = {"populate_by_name": True}


class TextConfig(BaseModel):
    format: Optional[TextFormat] = None
    verbosity: Optional[str] = None


class ResponsesRequest(BaseModel):
    model: Optional[str] = None
    input: Union[str, list[dict]]
    instructions: Optional[str] = None
    max_output_tokens: Optional[int] = Field(default=None, ge=1)
    temperature: Optional[float] = Field(default=None, ge=0, le=2)
    top_p: Optional[float] = Field(default=None, ge=0, le=1)
    stream: bool = False
    text: Optional[TextConfig] = None
    tools: Optional[list[dict]] = None
    tool_choice: Union[str, dict, None] = None
    parallel_tool_calls: Optional[bool] = None
    store: Optional[bool] = None
    previous_response_id: Optional[str] = None
    conversation: Any = None
    background: Optional[bool] = None
    reasoning: Optional[dict] = None
    include: Optional[list[str]] = None
    top_logprobs: Optional[int] = None
    truncation: Optional[str] = None
    prompt: Any = None
    metadata: Optional[dict] = None
    # accepted, with no effect on a local answer
    max_tool_calls: Optional[int] = None
    stream_options: Optional[dict] = None
    user: Optional[str] = None
    safety_identifier: Optional[str] = None
    prompt_cache_key: Optional[str] = None
    service_tier: Optional[str] = None
    model_config = {"extra": "allow"}


def refuse_unsupported(body: ResponsesRequest, name: str) -> None:
    """A clear 400 for what this server would otherwise quietly ignore."""
    if body.model_extra:
        raise BadRequest(f"{', '.join(sorted(body.model_extra))}: not a field of the "
                         "Responses API this server knows; leave it out.")
    if body.store:
        raise BadRequest(KEEPS_NOTHING.format(what="store=true cannot be honoured; "
                                              "leave store out or set it to false"))
    if body.previous_response_id:
        raise BadRequest(KEEPS_NOTHING.format(what="previous_response_id names "
                                              "nothing it can find"))
    if body.conversation is not None:
        raise BadRequest(KEEPS_NOTHING.format(what="it has no conversations"))
    if body.background:
        raise BadRequest(KEEPS_NOTHING.format(what="background=true cannot be "
                                              "fetched later; leave it out"))
    if body.prompt is not None:
        raise BadRequest("prompt (a stored prompt template) lives on OpenAI's platform; "
                         "send instructions and input instead.")
    if body.reasoning and any(v not in (None, "none") for v in body.reasoning.values()):
        raise BadRequest(f'"{name}" does not support reasoning: no model the kit '
                         "serves thinks before it answers yet. Leave reasoning out.")
    if body.include:
        raise BadRequest(f"include ({', '.join(body.include)}) is not supported: this "
                         "server returns the output items only. Leave it out.")
    if body.top_logprobs:
        raise BadRequest("top_logprobs is not returned by /v1/responses here; ask "
                         "/v1/chat/completions with logprobs=true instead.")
    if body.truncation not in (None, "disabled"):
        raise BadRequest("truncation 'auto' is not supported: the server never drops "
                         "part of the input. Send a shorter input, or leave it out.")
    if body.text and body.text.verbosity not in (None, "medium"):
        raise BadRequest("text.verbosity is not supported; leave it out, and ask for "
                         "a shorter or longer answer in the instructions.")


# ---- input items -> the kit's messages -------------------------------------

def _text(content, where: str) -> str:
    """A message's content (text or a list of text parts) as text."""
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise BadRequest(f"{where}: content is text or a list of parts.")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            texts.append(str(part.get("text", "")))
        elif kind == "refusal":
            texts.append(str(part.get("refusal", "")))
        else:
            raise BadRequest(f"{where}: parts of type {kind!r} are not supported: this "
                             "server handles text only (input_text).")
    return "".join(texts)


def to_messages(body: ResponsesRequest) -> list[dict]:
    """The request's instructions and input items as chat messages."""
    out = [{"role": "system", "content": body.instructions}] if body.instructions else []
    items = [{"role": "user", "content": body.input}] if isinstance(body.input, str) \
        else body.input
    if not items:
        raise BadRequest("input is empty: send the text to answer, or a list of items.")
    names = {}  # call_id -> tool name, for the results that answer them
    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise BadRequest(f"{where}: role is user, assistant, system or "
                                 f"developer, not {role!r}.")
            out.append({"role": "system" if role == "developer" else role,
                        "content": _text(item.get("content"), where)})
        elif kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise BadRequest(f"{where}: a function_call item has call_id, name and "
                                 "arguments (send back the item the server gave).")
            names[call_id] = name
            call = {"id": call_id, "type": "function", "function": {
                "name": name, "arguments": item.get("arguments") or "{}"}}
            last = out[-1] if out else {}
            if last.get("role") == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            output = item.get("output")
            message = {"role": "tool", "tool_call_id": call_id or "",
                       "content": output if isinstance(output, str)
                       else _text(output, where)}
            if call_id in names:
                message["name"] = names[call_id]
            out.append(message)
        elif kind in ("item_reference", "reasoning"):
            raise BadRequest(f"{where}: {kind} items are not supported here "
                             + ("(this server keeps no items to refer to); send the "
                                "item itself." if kind == "item_reference" else
                                "(no model the kit serves reasons); leave them out."))
        else:
            raise BadRequest(f"{where}: items of type {kind!r} are not supported; this "
                             "server reads message, function_call and "
                             "function_call_output items.")
    return tools_api.messages_in(out)


def _tools(body: ResponsesRequest) -> dict:
    """model.chat keywords for the request's function tools (built-in ones: 400)."""
    flat = []
    for tool in body.tools or []:
        kind = tool.get("type")
        if kind != "function":
            raise BadRequest(f"Tools of type {kind!r} are not supported: this server "
                             "runs no built-in tools (web search, file search, code "
                             "interpreter ...). Offer your own function tools instead.")
        flat.append({"type": "function", "function": {
            k: tool[k] for k in ("name", "description", "parameters") if k in tool}})
    choice = body.tool_choice
    if isinstance(choice, dict) and choice.get("type") not in ("function", None):
        raise BadRequest(f"tool_choice of type {choice.get('type')!r} is not "
                         "supported; use auto, none, required or "
                         "{\"type\": \"function\", \"name\": ...}.")
    return tools_api.chat_options(flat, choice, body.parallel_tool_calls)


def _schema(text: TextConfig | None):
    fmt = text.format if text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return "json"
    if fmt.schema_ is None:
        raise BadSchema("text.format of type 'json_schema' needs a schema")
    return fmt.schema_


# ---- the answer's shape ------------------------------------------------------

def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class Shape:
    """Builds the response object and its items for one request."""

    def __init__(self, body: ResponsesRequest, name: str):
        self.body, self.name = body, name
        self.id, self.created = _id("resp"), int(time.time())
        self.message_id = _id("msg")

    def response(self, status: str, output: list, stats=None, error=None) -> dict:
        b = self.body
        cut = stats is not None and stats.stop_reason in ("length", "context")
        fmt = b.text.format.model_dump(by_alias=True, exclude_none=True) \
            if b.text and b.text.format else {"type": "text"}
        return {
            "id": self.id, "object": "response", "created_at": self.created,
            "status": "incomplete" if cut and status == "completed" else status,
            "error": error, "model": self.name, "output": output,
            "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
            "instructions": b.instructions, "max_output_tokens": b.max_output_tokens,
            "temperature": b.temperature, "top_p": b.top_p,
            "parallel_tool_calls": b.parallel_tool_calls is not False,
            "tool_choice": b.tool_choice or "auto", "tools": b.tools or [],
            "text": {"format": fmt}, "store": False, "background": False,
            "previous_response_id": None, "reasoning": None, "truncation": "disabled",
            "metadata": b.metadata or {},
            "usage": None if stats is None else {
                "input_tokens": stats.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": stats.generated_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": stats.prompt_tokens + stats.generated_tokens}}

    def message(self, text: str, status: str = "completed") -> dict:
        return {"type": "message", "id": self.message_id, "status": status,
                "role": "assistant",
                "content": [self.part(text)] if status == "completed" else []}

    @staticmethod
    def part(text: str) -> dict:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    @staticmethod
    def calls(stream) -> list[dict]:
        """function_call items for the tools the model called."""
        return [{"type": "function_call", "id": _id("fc"), "call_id": c["id"],
                 "name": c["function"]["name"], "arguments": c["function"]["arguments"],
                 "status": "completed"} for c in tools_api.openai_calls(stream)]

    def answer(self, text: str, stream) -> dict:
        """The finished message item ("incomplete" when max_output_tokens cut it)."""
        message = self.message(text)
        if stream.stats.stop_reason in ("length", "context"):
            message["status"] = "incomplete"
        return message

    def output(self, text: str, stream) -> list[dict]:
        calls = self.calls(stream) if tools_api.called(stream) else []
        return ([self.answer(text, stream)] if text or not calls else []) + calls


@router.post("/responses")
async def create_response(body: ResponsesRequest, request: Request):
    pool = request.app.state.pool
    name = pool.canonical(body.model)
    refuse_unsupported(body, name)
    tools = _tools(body)
    schema = _schema(body.text)
    if tools and schema is not None:
        raise BadRequest("Send tools or text.format, not both.")
    made_for = preset(name)  # a model made with /api/create
    messages = made_for.messages(to_messages(body))
    sampling = made_for.sampling(
        dict(temperature=body.temperature, top_p=body.top_p,
             max_tokens=body.max_output_tokens or pool.n_ctx),
        {k for k, v in (("temperature", body.temperature), ("top_p", body.top_p),
                        ("max_tokens", body.max_output_tokens)) if v is not None})
    extra = {"json_schema": schema} if schema is not None else {}
    shape, made = Shape(body, name), {}

    def make_stream(model):
        needs_schema_support(model, schema)
        made["stream"] = model.chat(messages, **sampling, **extra, **tools)
        return made["stream"]

    answer = await begin(request, pool, name, make_stream)
    if not body.stream:
        text, stats = await answer.collect()
        return JSONResponse(shape.response("completed", shape.output(text, made["stream"]),
                                           stats))
    from sse_starlette.sse import EventSourceResponse

    return EventSourceResponse(_events(answer, shape, made), ping=15)


async def _events(answer, shape: Shape, made: dict):
    """OpenAI's typed server-sent events for one streamed answer."""
    seq = iter(range(1 << 30))

    def event(kind: str, **fields) -> dict:
        return {"event": kind, "data": json.dumps({"type": kind, "sequence_number":
                                                   next(seq), **fields})}

    where = {"item_id": shape.message_id, "output_index": 0, "content_index": 0}
    opening = lambda: [  # noqa: E731 (the message begins with its first words)
        event("response.output_item.added", output_index=0,
              item=shape.message("", "in_progress")),
        event("response.content_part.added", **where, part=shape.part(""))]
    text = []
    try:
        yield event("response.created", response=shape.response("in_progress", []))
        yield event("response.in_progress", response=shape.response("in_progress", []))
        async for kind, value in answer.events():
            if kind == "piece":
                for e in [] if text else opening():
                    yield e
                text.append(value)
                yield event("response.output_text.delta", **where, delta=value,
                            logprobs=[])
            elif kind == "error":
                yield event("error", code=str(error_status(value)), message=str(value),
                            param=None)
                yield event("response.failed", response=shape.response(
                    "failed", [], error={"code": "server_error", "message": str(value)}))
                return
            else:
                stream, words, output = made["stream"], "".join(text), []
                calls = shape.calls(stream) if tools_api.called(stream) else []
                if text or not calls:  # an empty answer is still a message
                    for e in [] if text else opening():
                        yield e
                    yield event("response.output_text.done", **where, text=words,
                                logprobs=[])
                    yield event("response.content_part.done", **where,
                                part=shape.part(words))
                    output.append(shape.answer(words, stream))
                    yield event("response.output_item.done", output_index=0,
                                item=output[-1])
                for call in calls:  # each call whole, as one delta
                    at = {"item_id": call["id"], "output_index": len(output)}
                    yield event("response.output_item.added", output_index=len(output),
                                item={**call, "arguments": "", "status": "in_progress"})
                    yield event("response.function_call_arguments.delta", **at,
                                delta=call["arguments"])
                    yield event("response.function_call_arguments.done", **at,
                                name=call["name"], arguments=call["arguments"])
                    output.append(call)
                    yield event("response.output_item.done", output_index=len(output) - 1,
                                item=call)
                final = shape.response("completed", output, value)
                yield event("response.completed" if final["status"] == "completed"
                            else "response.incomplete", response=final)
    finally:
        answer.cancel()  # the client may leave before the end


@router.get("/responses/{response_id:path}")
@router.delete("/responses/{response_id:path}")
async def stored_response(response_id: str):
    raise HTTPException(404, KEEPS_NOTHING.format(what=f"{response_id!r} cannot be "
                                                  "found"))
