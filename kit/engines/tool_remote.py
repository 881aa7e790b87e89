"""Tool calls through a remote OpenAI-compatible server (notebook 09).

The server applies its own template and (perhaps) grammar; the kit sends the
tools, reads `tool_calls` back and checks them against the schemas as it
does its own. A server without tool support is named as such.

>>> remote = kit.load(engine="remote", base_url="http://127.0.0.1:11434")
>>> remote.chat(messages, tools=[add]).tool_calls
"""
from __future__ import annotations

import json
import time

from kit.engines.base import Stream
from kit.errors import ToolsUnsupported
from kit.engines.tool_schema import CLOSE, OPEN


def _wire_messages(messages) -> list[dict]:
    """OpenAI's shape: call arguments travel as JSON text."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [{**c, "function": {**c["function"], "arguments": (
                c["function"]["arguments"] if isinstance(c["function"]["arguments"], str)
                else json.dumps(c["function"]["arguments"]))}} for c in m["tool_calls"]]
        out.append(m)
    return out


def remote_answer(engine, messages, tools, tool_choice, sampling) -> Stream:
    """The server's answer as the text a local model would write (calls tagged)."""
    s = sampling
    choice = tool_choice if tool_choice in ("auto", "none", "required", None) else {
        "type": "function", "function": {"name": (
            tool_choice.get("function", tool_choice).get("name")
            if isinstance(tool_choice, dict) else tool_choice)}}
    body = engine._body({"messages": _wire_messages(messages),
                         "tools": [t.schema() for t in tools],
                         "tool_choice": choice or "auto"}, s)
    body.update(stream=False)
    body.pop("stream_options", None)

    def pieces(stream):
        import httpx

        t0 = time.perf_counter()
        try:
            answer = engine._client.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise engine._fail(exc) from exc
        if answer.status_code in (400, 404, 422, 501) and "tool" in answer.text.lower():
            raise ToolsUnsupported(f"The server at {engine.base_url}",
                                   f"it answered HTTP {answer.status_code}: "
                                   f"{answer.text[:200]}")
        if answer.status_code >= 400:
            raise engine._bad(f"POST /v1/chat/completions gave HTTP "
                              f"{answer.status_code}: {answer.text[:200]!r}")
        data = answer.json()
        choice0 = (data.get("choices") or [{}])[0]
        msg = choice0.get("message") or {}
        usage = data.get("usage") or {}
        st = stream.stats
        st.prompt_tokens = usage.get("prompt_tokens") or 0
        st.generated_tokens = usage.get("completion_tokens") or 0
        st.total_s = st.ttft_s = time.perf_counter() - t0
        st.stop_reason = "eos" if choice0.get("finish_reason") != "length" else "length"
        text = msg.get("content") or ""
        for c in msg.get("tool_calls") or []:  # the same checks as a local answer
            f = c.get("function") or {}
            args = f.get("arguments")
            try:
                args = json.loads(args) if isinstance(args, str) else args
            except ValueError:
                pass  # left as text: parse_calls reports it
            text += f"\n{OPEN}\n" + json.dumps({"name": f.get("name"),
                                                 "arguments": args}) + f"\n{CLOSE}"
        yield text

    return Stream(pieces)
