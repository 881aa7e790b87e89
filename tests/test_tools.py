"""Tool calling in the Python API (kit.tools): schemas, grammar, the loop.

Mechanics run on the starter with forced calls (fast and repeatable); the
capable model answers the notebook's question once, through its own template.
"""
import json
import threading
import time
from typing import Literal, Optional

import pytest

from kit.engines import load
from kit.errors import BadTool, NoToolCall, ToolsUnsupported, UnknownTool
from kit.tools import as_tools, needs_confirmation, run_tools
from kit.engines.tool_calls import (FALLBACK_NOTICE, call_grammar, parse_calls,
                             prepare_messages, template_speaks_tools)
from kit.tools.library import TASKS, calculator, search_catalogue
from kit.engines.tool_schema import chosen, from_schema

T1 = dict(n_threads=1, n_ctx=1024, quiet=True)
GREEDY = dict(temperature=0, max_tokens=40)


def shelve(title: str, copies: int = 1, shelf: Optional[str] = None,
           kind: Literal["book", "dvd"] = "book", tags: list[str] = ()) -> str:
    """Put a new item on a shelf.

    title: the item's title
    copies: how many copies arrived
    """
    return f"shelved {copies} x {title}"


def ping() -> str:
    """Say pong."""
    return "pong"


@pytest.fixture(scope="module")
def starter():
    return load("smollm2:135m", **T1)


# ---- tools from functions and schemas -----------------------------------------

def test_schema_from_a_function_uses_hints_defaults_and_docstring():
    (tool,) = as_tools([shelve])
    p = tool.parameters
    assert tool.description == "Put a new item on a shelf."
    assert p["required"] == ["title"]
    assert p["properties"]["copies"] == {"type": "integer",
                                         "description": "how many copies arrived"}
    assert p["properties"]["shelf"] == {"type": "string"}
    assert p["properties"]["kind"] == {"enum": ["book", "dvd"]}
    assert p["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert tool.schema()["function"]["name"] == "shelve"


def test_bad_tools_are_refused_with_the_fix():
    def untyped(title):
        """No hints."""

    with pytest.raises(BadTool, match="'title' has no type hint .*title: str"):
        as_tools([untyped])
    with pytest.raises(BadTool, match="not valid JSON Schema"):
        as_tools([{"type": "function", "function": {
            "name": "find", "parameters": {"type": "object",
                                           "properties": {"q": {"type": "text"}}}}}])
    with pytest.raises(BadTool, match="two tools share this name"):
        as_tools([ping, {"type": "function", "function": {"name": "ping"}}])
    with pytest.raises(BadTool, match="a name is"):
        from_schema({"type": "function", "function": {"name": "no spaces"}})
    with pytest.raises(UnknownTool, match="No tool named 'fly'.*offered: ping"):
        chosen(as_tools([ping]), "fly")
    named = {"type": "function", "function": {"name": "ping"}}
    assert chosen(as_tools([ping, shelve]), named)[0] == "required"


def test_parse_calls_reports_what_does_not_fit():
    tools = as_tools([shelve])
    text = ('Sure.\n<tool_call>\n{"name": "shelve", "arguments": {"title": "Emma"}}'
            '\n</tool_call>\n<tool_call>\n{"name": "fly", "arguments": {}}\n'
            '</tool_call><tool_call>\n{"name": "shelve", "arguments": '
            '{"copies": "two"}}\n</tool_call><tool_call>{"name": ')
    words, calls, problems = parse_calls(text, tools)
    assert words == "Sure."
    assert [(c.name, c.arguments) for c in calls] == [("shelve", {"title": "Emma"})]
    assert any("'fly', which was not offered" in p for p in problems)
    assert any("do not fit" in p and "title" in p for p in problems)
    assert any("not complete JSON" in p for p in problems)


def test_messages_without_template_support_become_text():
    call = {"id": "c1", "type": "function",
            "function": {"name": "ping", "arguments": "{}"}}
    msgs = prepare_messages([{"role": "user", "content": "hi"},
                             {"role": "assistant", "content": None, "tool_calls": [call]},
                             {"role": "tool", "tool_call_id": "c1", "content": "pong"}],
                            as_tools([ping]), native=False)
    assert msgs[0]["role"] == "system" and '"name": "ping"' in msgs[0]["content"]
    assert '<tool_call>\n{"name": "ping", "arguments": {}}' in msgs[2]["content"]
    assert msgs[3] == {"role": "user",
                       "content": "<tool_response>\npong\n</tool_response>"}
    with pytest.raises(BadTool, match="not JSON"):
        prepare_messages([{"role": "assistant", "tool_calls": [
            {"function": {"name": "ping", "arguments": "{oops"}}]}], [], native=True)


def test_grammar_is_accepted_by_llama_cpp(starter):
    from kit.structured import check_grammar

    tools = as_tools([shelve, ping, calculator])
    for mode in ("auto", "required"):
        check_grammar(starter.llm, call_grammar(tools, mode))
    assert call_grammar(tools, "none") is None


# ---- a real model, forced and free -----------------------------------------------

def test_required_call_always_parses_and_fits(starter):
    assert not template_speaks_tools(starter.chat_template)
    answer = starter.chat([{"role": "user", "content": "Shelve two copies of Emma."}],
                          tools=[shelve], tool_choice="required", **GREEDY)
    assert answer.raw.startswith("<tool_call>\n{")  # what the model wrote
    (call,) = answer.tool_calls
    assert call.name == "shelve" and isinstance(call.arguments["title"], str)
    assert answer.called and answer.text == "" and not answer.problems
    assert FALLBACK_NOTICE in answer.stats.notices  # said, not hidden
    msg = answer.message()
    assert json.loads(msg["tool_calls"][0]["function"]["arguments"]) == call.arguments


def test_text_instead_of_a_required_call_is_an_error(starter):
    answer = starter.chat([{"role": "user", "content": "Say hello."}], tools=[ping],
                          tool_choice="required", constrain=False, max_tokens=3,
                          temperature=0)
    with pytest.raises(NoToolCall, match="A tool call was required, but the model "
                       "answered with text"):
        answer.text


def test_tool_choice_none_answers_in_words(starter):
    answer = starter.chat([{"role": "user", "content": "Say hello."}], tools=[ping],
                          tool_choice="none", **GREEDY)
    assert answer.text and not answer.called and "<tool_call>" not in answer.raw
    with pytest.raises(BadTool, match="no tools were offered"):
        starter.chat([{"role": "user", "content": "hi"}], tools=[],
                     tool_choice="required")


def test_engines_without_tools_say_so():
    from kit.engines.ctransformers import CTransformersEngine
    from kit.engines.tool_calls import tool_chat

    engine = object.__new__(CTransformersEngine)  # the class is what decides
    with pytest.raises(ToolsUnsupported, match="ctransformers engine cannot call "
                       "tools.*llama.cpp engine"):
        tool_chat(engine, [{"role": "user", "content": "hi"}], [ping])


def test_a_remote_server_without_tools_is_named(tmp_path):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NoTools(BaseHTTPRequestHandler):
        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200, {"object": "list", "data": [{"id": "old-model"}]})

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send(400, {"error": {"message": "tools are not supported"}})

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NoTools)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        remote = load(engine="remote", base_url=f"http://127.0.0.1:{httpd.server_port}",
                      quiet=True)
        with pytest.raises(ToolsUnsupported, match="The server at .* cannot call "
                           "tools: it answered HTTP 400"):
            remote.chat([{"role": "user", "content": "hi"}], tools=[ping]).text
    finally:
        httpd.shutdown()


# ---- the loop: errors, hangs, a person's yes, the step limit -----------------------

def test_loop_feeds_errors_and_timeouts_back(starter):
    def broken() -> str:
        """Always fails."""
        raise RuntimeError("the catalogue is offline")

    def stuck() -> str:
        """Never finishes."""
        time.sleep(30)

    run = run_tools(starter, "Go.", [broken], tool_choice="broken", max_steps=1,
                    verbose=False, **GREEDY)
    kinds = [s.kind for s in run.steps]
    assert kinds == ["call", "error", "limit"] and run.answer is None
    assert "RuntimeError: the catalogue is offline" in run.messages[-1]["content"]
    assert run.messages[-1]["role"] == "tool"
    t0 = time.monotonic()
    run = run_tools(starter, "Go.", [stuck], tool_choice="stuck", max_steps=1,
                    timeout=0.5, verbose=False, **GREEDY)
    assert "did not finish within 0.5 s" in run.steps[1].text
    assert time.monotonic() - t0 < 25  # it did not wait for the tool


def test_a_tool_that_deletes_needs_a_yes(starter, capsys):
    done = []

    @needs_confirmation
    def forget(book_id: int) -> str:
        """Delete a book record for good."""
        done.append(book_id)
        return "deleted"

    run = run_tools(starter, "Delete book 7.", [forget], tool_choice="required",
                    max_steps=1, **GREEDY)
    assert run.steps[1].kind == "refused" and not done
    assert "step 1  model calls forget(" in capsys.readouterr().out  # visible
    asked = []
    run = run_tools(starter, "Delete book 7.", [forget], tool_choice="required",
                    max_steps=1, ask=lambda call: asked.append(call) or True,
                    verbose=False, **GREEDY)
    assert run.steps[1].kind == "result" and done and asked[0].name == "forget"


def test_schema_only_tools_cannot_run(starter):
    with pytest.raises(BadTool, match="only a schema"):
        run_tools(starter, "hi", [{"type": "function", "function": {"name": "x"}}])


def test_catalogue_and_calculator():
    austen = search_catalogue(author="austen")
    assert len(austen) == 7
    assert [b.split(" (")[0] for b in austen if "ON LOAN" in b] == ["Emma", "Persuasion"]
    assert calculator("(120 + 80) / 4") == 50 and calculator("2^10") == 1024
    with pytest.raises(ValueError, match="only numbers"):
        calculator("__import__('os')")
    assert len(TASKS) >= 10


# ---- the capable model, through its own template ----------------------------------

def test_qwen_answers_the_austen_question(qwen_model_path):
    qwen = load(str(qwen_model_path), n_threads=2, n_ctx=2048, quiet=True)
    assert template_speaks_tools(qwen.chat_template)
    run = run_tools(qwen, "Which books by Jane Austen do we have, and which are "
                    "on loan?", [search_catalogue], max_steps=3, verbose=False,
                    temperature=0, max_tokens=80)
    first = run.calls()[0]
    assert first.name == "search_catalogue"
    assert "austen" in first.arguments.get("author", "").lower()
    assert FALLBACK_NOTICE not in run.steps[0].raw
    assert run.stopped == "answer"
    assert "Emma" in run.answer and "Persuasion" in run.answer, run.answer
