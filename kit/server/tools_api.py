"""Tool calls over HTTP: the request and answer shapes of both APIs (notebook 09).

OpenAI: `tools`, `tool_choice`, `parallel_tool_calls`; assistant messages with
`tool_calls` (arguments as JSON text), `role: tool` messages with
`tool_call_id`; answers with `message.tool_calls` and finish_reason
"tool_calls", or streamed `delta.tool_calls`. Ollama: `tools` in /api/chat,
`message.tool_calls` with arguments as an object. The work itself is
kit.tools; a bad tool is a KitError, so the client gets HTTP 400.

>>> chat_options(body.tools, body.tool_choice)   # for model.chat(**...)
{'tools': [...], 'tool_choice': 'auto'}
"""
from __future__ import annotations

import json

from kit.errors import BadTool

# finish_reason / done_reason when the answer is a call
TOOL_FINISH = "tool_calls"


def chat_options(tools, tool_choice=None, parallel=None) -> dict:
    """model.chat keyword arguments for a request's tools (checked now: 400)."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise BadTool(str(tool_choice), "tool_choice names a tool, but the "
                          "request offers no tools")
        return {}
    from kit.engines.tool_schema import as_tools, chosen

    checked = as_tools([t if isinstance(t, dict) else dict(t) for t in tools])
    chosen(checked, tool_choice)  # an unknown name: UnknownTool, before any work
    out = {"tools": [t.schema() for t in checked], "tool_choice": tool_choice or "auto"}
    if parallel is False:
        out["parallel"] = False
    return out


def messages_in(messages, text=lambda content: content or "") -> list[dict]:
    """Request messages (pydantic or dicts) as kit messages, calls kept.

    `text(content)` turns a message's content into text (OpenAI's parts).
    """
    out = []
    for m in messages:
        d = m.model_dump(exclude_none=True) if hasattr(m, "model_dump") else dict(m)
        msg = {"role": "system" if d.get("role") == "developer" else d.get("role"),
               "content": text(d.get("content"))}
        if d.get("tool_calls"):
            msg["tool_calls"] = [_call_in(c) for c in d["tool_calls"]]
        for key in ("tool_call_id", "name", "tool_name"):
            if d.get(key):
                msg[key] = d[key]
        out.append(msg)
    return out


def _call_in(call) -> dict:
    f = call.get("function") if isinstance(call, dict) else None
    if not isinstance(f, dict) or not isinstance(f.get("name"), str):
        raise BadTool(str(call)[:40], "each tool call in a message needs "
                      "function.name and function.arguments")
    args = f.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args or "{}")
        except ValueError as exc:
            raise BadTool(f["name"], f"the arguments of a tool call in the "
                          f"conversation are not JSON ({exc})") from exc
    return {"id": call.get("id") or "", "type": "function",
            "function": {"name": f["name"], "arguments": args}}


def openai_calls(stream) -> list[dict]:
    """message.tool_calls of a finished answer (OpenAI: arguments as text)."""
    return [c.openai() for c in getattr(stream, "tool_calls", None) or []]


def openai_deltas(stream) -> list[dict]:
    """delta.tool_calls for a stream: each call whole, with its index."""
    return [{"index": i, **c} for i, c in enumerate(openai_calls(stream))]


def ollama_calls(stream) -> list[dict]:
    """message.tool_calls of a finished answer (Ollama: arguments as an object)."""
    return [{"function": {"name": c.name, "arguments": c.arguments}}
            for c in getattr(stream, "tool_calls", None) or []]


def called(stream) -> bool:
    return bool(getattr(stream, "tool_calls", None))


def fim_stream(model, prompt: str, suffix: str | None, sampling: dict):
    """A fill-in-the-middle Stream if the request asks for one, else None.

    Asked for by `suffix` (OpenAI's and Ollama's form), or by a prompt already
    in the model's FIM layout (how continue.dev sends autocomplete).
    """
    from kit.engines.fim import fill_in_middle, split_fim_layout

    if suffix:
        return fill_in_middle(model, prompt, suffix, **sampling)
    parts = split_fim_layout(model, prompt) if hasattr(model, "complete") else None
    return fill_in_middle(model, *parts, **sampling) if parts else None
