"""Tool calls and fill in the middle through kit serve, with the real clients.

OpenAI's client does its round trips on the starter with tool_choice forcing
the call (fast and repeatable); Ollama's API has no tool_choice, so its round
trips use qwen2.5-coder:1.5b, which decides to call by itself. The editor
test sends what continue.dev sends for chat and autocomplete.
"""
import json

import httpx
import jsonschema
import ollama
import openai
import pytest

from kit.server import start
from kit.tools.library import search_catalogue

STARTER, QWEN = "smollm2:135m", "qwen2.5-coder:1.5b"
FIND = {"type": "function", "function": {
    "name": "find_book", "description": "Find a book in the library catalogue.",
    "parameters": {"type": "object", "properties": {
        "author": {"type": "string", "maxLength": 40},
        "title": {"type": "string", "maxLength": 40}},
        "required": ["author"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "Which books by Jane Austen do we have?"}]
RESULT = json.dumps([{"title": "Emma", "status": "on loan"},
                     {"title": "Persuasion", "status": "available"}])
GREEDY = dict(temperature=0, max_tokens=80)


@pytest.fixture(scope="module")
def server(qwen_model_path):
    with start([STARTER, QWEN], n_ctx=2048, n_threads=1, quiet=True) as srv:
        yield srv


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=server.openai_url, api_key="unused", max_retries=0,
                         timeout=600)


@pytest.fixture(scope="module")
def oll(server):
    return ollama.Client(host=server.url, timeout=600)


def check_call(name, arguments: str):
    assert name == "find_book"
    jsonschema.validate(json.loads(arguments), FIND["function"]["parameters"])


# ---- OpenAI: tools, tool_choice, tool_calls, role "tool" -------------------------

def test_openai_round_trip(oai):
    first = oai.chat.completions.create(model=STARTER, messages=ASK, tools=[FIND],
                                        tool_choice="required", **GREEDY)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    check_call(call.function.name, call.function.arguments)
    messages = ASK + [choice.message.model_dump(exclude_none=True),
                      {"role": "tool", "tool_call_id": call.id, "content": RESULT}]
    final = oai.chat.completions.create(model=STARTER, messages=messages,
                                        tools=[FIND], tool_choice="none", **GREEDY)
    assert final.choices[0].finish_reason in ("stop", "length")
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls


def test_openai_streamed_round_trip(oai):
    calls, finish, content = {}, None, ""
    for chunk in oai.chat.completions.create(
            model=STARTER, messages=ASK, tools=[FIND], stream=True,
            tool_choice={"type": "function", "function": {"name": "find_book"}},
            **GREEDY):
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for d in delta.tool_calls or []:  # pieces of each call, by index
            c = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            c["id"] += d.id or ""
            c["name"] += (d.function.name or "") if d.function else ""
            c["arguments"] += (d.function.arguments or "") if d.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls" and content == ""
    call = calls[0]
    check_call(call["name"], call["arguments"])
    messages = ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call["id"], "type": "function",
         "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": RESULT}]
    pieces = [c.choices[0].delta.content or "" for c in oai.chat.completions.create(
        model=STARTER, messages=messages, tools=[FIND], tool_choice="none",
        stream=True, **GREEDY) if c.choices]
    assert "".join(pieces).strip()


def test_bad_tool_input_is_400_with_the_reason(oai, oll, server):
    bad = {"type": "function", "function": {"name": "find", "parameters": {
        "type": "object", "properties": {"q": {"type": "text"}}}}}
    cases = [
        (dict(tools=[bad]), "not valid JSON Schema"),
        (dict(tools=[FIND, FIND]), "two tools share this name"),
        (dict(tools=[FIND], tool_choice={"type": "function",
                                         "function": {"name": "fly"}}),
         "No tool named 'fly'"),
        (dict(messages=ASK + [{"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "find_book", "arguments": "{oops"}}]}],
              tools=[FIND]), "not JSON"),
    ]
    for extra, message in cases:
        with pytest.raises(openai.BadRequestError, match=message):
            oai.chat.completions.create(**{"model": STARTER, "messages": ASK,
                                           "max_tokens": 5, **extra})
    with pytest.raises(ollama.ResponseError, match="not valid JSON Schema") as err:
        oll.chat(model=STARTER, messages=ASK, tools=[bad])
    assert err.value.status_code == 400
    with pytest.raises(openai.BadRequestError, match="cannot fill in the middle: its "
                       "vocabulary has no"):
        oai.completions.create(model=STARTER, prompt="def f(", suffix=")", max_tokens=5)


def test_the_remote_engine_calls_tools_through_the_server(server):
    from kit.engines import load

    remote = load(STARTER, engine="remote", base_url=server.url, quiet=True)
    answer = remote.chat(ASK, tools=[FIND], tool_choice="required", **GREEDY)
    (call,) = answer.tool_calls  # checked against the schema here too
    assert call.name == "find_book" and isinstance(call.arguments["author"], str)


# ---- Ollama: tools in /api/chat, message.tool_calls --------------------------------

def test_ollama_round_trip(oll):
    """qwen2.5-coder decides to call by itself; the kit keeps the call valid."""
    messages = [{"role": "user", "content": "Which books by Jane Austen do we have, "
                 "and which are on loan? Use the catalogue."}]
    options = {"temperature": 0, "num_predict": 60}
    first = oll.chat(model=QWEN, messages=messages, tools=[search_catalogue],
                     options=options)
    (call,) = first.message.tool_calls
    assert call.function.name == "search_catalogue"
    assert "austen" in call.function.arguments["author"].lower()
    messages += [first.message, {"role": "tool", "tool_name": "search_catalogue",
                                 "content": json.dumps(search_catalogue(
                                     **call.function.arguments))}]
    # The final request offers no tools: qwen2.5-coder:1.5b tends to repeat a
    # call it has the result of (run_tools guards against that the same way).
    final = oll.chat(model=QWEN, messages=messages, options=options)
    assert not final.message.tool_calls
    assert "Emma" in final.message.content or "Persuasion" in final.message.content

    # streamed: the call arrives in one chunk, then the final answer piece by piece
    calls = [c for part in oll.chat(model=QWEN, messages=messages[:1],
                                    tools=[search_catalogue], options=options,
                                    stream=True)
             for c in part.message.tool_calls or []]
    assert [c.function.name for c in calls] == ["search_catalogue"]
    text = "".join(p.message.content for p in oll.chat(
        model=QWEN, messages=messages, options=options, stream=True))
    assert "Emma" in text or "Persuasion" in text


# ---- the editor: what continue.dev sends ------------------------------------------

CODE_BEFORE = "def area(width, height):\n    return "
CODE_AFTER = "\n\n\nprint(area(3, 4))\n"


def test_editor_requests(oai, server):
    # 1. chat with a system prompt and the selected code, streamed
    pieces = [c.choices[0].delta.content or "" for c in oai.chat.completions.create(
        model=QWEN, stream=True, temperature=0, max_tokens=40, messages=[
            {"role": "system", "content": "You are a helpful coding assistant."},
            {"role": "user", "content": "```python\ndef area(width, height):\n"
             "    return width * height\n```\nWhat does this function return? "
             "One sentence."}]) if c.choices]
    answer = "".join(pieces)
    assert len(pieces) > 3 and answer.strip() and "<|" not in answer
    # 2. autocomplete as continue.dev lays it out (FIM tokens in the prompt)
    layout = f"<|fim_prefix|>{CODE_BEFORE}<|fim_suffix|>{CODE_AFTER}<|fim_middle|>"
    text = "".join(c.choices[0].text for c in oai.completions.create(
        model=QWEN, prompt=layout, stream=True, temperature=0, max_tokens=16,
        stop=["\n\n", "<|endoftext|>"]))
    assert "width * height" in text and "<|" not in text and "return" not in text
    # 3. the OpenAI API's own form: prompt and suffix apart
    reply = oai.completions.create(model=QWEN, prompt=CODE_BEFORE, suffix=CODE_AFTER,
                                   temperature=0, max_tokens=16)
    assert "width * height" in reply.choices[0].text
    # 4. Ollama's form (continue.dev's ollama provider): /api/generate with suffix
    got = httpx.post(f"{server.url}/api/generate", timeout=600, json={
        "model": QWEN, "prompt": CODE_BEFORE, "suffix": CODE_AFTER, "stream": False,
        "options": {"temperature": 0, "num_predict": 16}}).json()
    assert "width * height" in got["response"]
