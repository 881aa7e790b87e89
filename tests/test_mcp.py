"""Tools over the Model Context Protocol (kit.tools.mcp_server, kit.tools.mcp_client).

A real `kit mcp serve` subprocess is driven by the official `mcp` SDK's
client, over stdio and over streamable HTTP (key, Host check); the kit's
agent uses a second, test-only MCP server (tests/mcp_test_server.py) with
the starter model; servers that are missing, crash, hang or send what is
not MCP end in a KitError within their time limit.
"""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from kit.errors import McpServerFailed, McpServerMissing
from kit.tools import run_tools
from kit.tools.mcp_client import clean_schema, kit_server_command, mcp_tools

TEST_SERVER = [sys.executable, str(Path(__file__).with_name("mcp_test_server.py"))]
READS = {"search_catalogue", "books_on_loan", "days_between", "day_of_week",
         "search_documents"}


@pytest.fixture(scope="module")
def starter():
    from kit.engines import load

    return load("smollm2:135m", n_threads=1, n_ctx=2048, quiet=True)


def _env(home: Path, **extra) -> dict:
    return {"KIT_HOME": str(home), **extra}


# ---- the kit's server, as any MCP host sees it ----------------------------------

def test_kit_mcp_serve_speaks_mcp_to_the_sdk_client(tmp_path):
    from mcp import Client, StdioServerParameters
    from mcp.types import ElicitResult

    asked = []

    async def say_no(context, params):
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": False})

    async def session():
        params = StdioServerParameters(command=sys.executable, env=_env(tmp_path),
                                       args=["-m", "kit", "mcp", "serve", "--search",
                                             "keywords"])
        out = {}
        async with Client(params, mode="legacy", read_timeout_seconds=60) as client:
            out["info"] = client.server_info  # the initialize handshake's answer
            out["tools"] = {t.name: t for t in (await client.list_tools()).tools}
            out["austen"] = await client.call_tool("search_catalogue", {"author": "Austen"})
            out["docs"] = await client.call_tool("search_documents",
                                                 {"query": "Sunday opening hours"})
            out["bad"] = await client.call_tool("day_of_week", {"date": "Christmas"})
            # no elicitation here: the writing tool cannot ask, so it does nothing
            out["renew"] = await client.call_tool("renew_loan", {"book_id": 4})
        async with Client(params, mode="legacy", read_timeout_seconds=60,
                          elicitation_callback=say_no) as client:
            out["no"] = await client.call_tool("renew_loan", {"book_id": 4})
            out["after"] = await client.call_tool("search_catalogue", {"title": "Emma"})
        return out

    out = anyio.run(session)
    assert out["info"].name == "kit-library"
    tools = out["tools"]
    assert set(tools) == READS | {"renew_loan"}
    assert all(tools[n].annotations.read_only_hint is True for n in READS)
    assert tools["renew_loan"].annotations.read_only_hint is False
    assert "book_id" in tools["renew_loan"].input_schema["properties"]
    text = out["austen"].content[0].text
    assert not out["austen"].is_error and "Emma" in text and "Persuasion" in text
    docs = out["docs"].content[0].text
    assert "opening-hours.md" in docs and "Sunday" in docs  # file, place, snippet
    assert out["bad"].is_error and "YYYY-MM-DD" in out["bad"].content[0].text
    assert out["renew"].is_error and "cannot ask" in out["renew"].content[0].text
    assert asked and "Renew the loan of Emma (id 4)" in asked[0]
    assert out["no"].content[0].text.startswith("Not renewed")
    assert "2026-12-22" in out["after"].content[0].text  # the due date is unchanged


def _kit(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kit", "mcp", *args], timeout=180,
                          env={**os.environ, "KIT_HOME": str(home)},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def test_kit_mcp_tools_says_which_tools_change_things(tmp_path):
    out = _kit(tmp_path, "tools", "--search", "keywords")
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:]}
    assert set(rows) == READS | {"renew_loan"}
    assert "yes (asks first)" in rows["renew_loan"] and " no " in rows["day_of_week"]
    out = _kit(tmp_path, "serve", "--folder", str(tmp_path / "no-such-folder"))
    assert out.returncode != 0 and "not a folder on this computer" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_server(tmp_path):
    port, key = _free_port(), "room-key-for-tests-0123456789"
    env = {**os.environ, "KIT_HOME": str(tmp_path), "KIT_API_KEY": key}
    proc = subprocess.Popen([sys.executable, "-m", "kit", "mcp", "serve", "--http",
                             "--port", str(port), "--search", "keywords"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/mcp", key, proc
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_http_needs_the_key_and_a_local_host_name(http_server):
    import httpx

    url, key, proc = http_server
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "curl", "version": "0"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    r = httpx.post(url, json=hello, headers=accept)
    assert r.status_code == 401 and "Bearer" in r.text
    r = httpx.post(url, json=hello, headers={**accept, "Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = httpx.post(url, json=hello, headers={**accept, "Authorization": f"Bearer {key}",
                                             "Host": "evil.example:80"})
    assert r.status_code == 403  # DNS rebinding: another name for 127.0.0.1
    with mcp_tools(url, key=key, timeout=30, verbose=False) as tools:
        assert {t.name for t in tools} == READS | {"renew_loan"}
        assert tools.call("day_of_week", {"date": "2026-12-25"}) == "Friday"
    with pytest.raises(McpServerFailed, match="HTTP 401 .the key is wrong"):
        mcp_tools(url, key="not-the-key", timeout=10, start_timeout=20, verbose=False)
    proc.terminate()
    assert key not in proc.communicate(timeout=10)[1]  # the key is never logged


# ---- the kit's agent, using another MCP server ------------------------------------

def test_the_agent_calls_a_second_mcp_server(starter, tmp_path):
    log = tmp_path / "reservations.txt"
    with mcp_tools(TEST_SERVER + ["ok", str(log)], timeout=20, verbose=False) as tools:
        by_name = {t.name: t for t in tools}
        assert not by_name["room_hours"].confirm  # readOnlyHint: true
        assert by_name["reserve_room"].confirm  # readOnlyHint: false
        assert by_name["unmarked"].confirm  # no annotations: assume it changes things
        assert "title" not in by_name["room_hours"].parameters["properties"]["room"]
        run = run_tools(starter, "When can the Garden Room be booked?",
                        [by_name["room_hours"]], tool_choice="room_hours", max_steps=2,
                        temperature=0, max_tokens=40, verbose=False)
    assert run.calls()[0].name == "room_hours"
    result = next(s for s in run.steps if s.kind == "result")
    assert "Mill Street Branch can be booked 10:00-16:00" in result.text  # from the server
    assert run.answer  # and the run ends in words


def test_a_writing_tool_waits_for_a_persons_yes(starter, tmp_path):
    log = tmp_path / "reservations.txt"
    options = dict(tool_choice="reserve_room", max_steps=1, temperature=0,
                   max_tokens=80, verbose=False)
    question = "Reserve the Garden Room for 2026-12-12."
    with mcp_tools(TEST_SERVER + ["ok", str(log)], timeout=20, verbose=False) as tools:
        writing = [t for t in tools if t.name == "reserve_room"]
        run = run_tools(starter, question, writing, **options)
        assert run.steps[1].kind == "refused" and run.stopped == "refused"
        assert not log.exists()  # nothing reached the server
        asked = []
        run = run_tools(starter, question, writing,
                        ask=lambda call: asked.append(call) or True, **options)
        assert asked[0].name == "reserve_room" and run.steps[1].kind == "result"
    assert log.read_text().count("\n") == 1


def test_the_kit_server_asks_through_the_gate_then_renews(tmp_path):
    command = kit_server_command(search="keywords")
    with mcp_tools(command, env=_env(tmp_path), timeout=60, verbose=False) as tools:
        assert {t.name for t in tools if t.confirm} == {"renew_loan"}
        said = tools.call("renew_loan", {"book_id": 4})  # not through the gate
        assert said.startswith("Not renewed") and tools.asked[-1][1] == "decline"
        said = tools.call("renew_loan", {"book_id": 4}, approved=True)
        assert said.endswith("now due on 2027-01-05.") and tools.asked[-1][1] == "accept"


# ---- servers that fail: a clear error, in time, never a hang ------------------------

def test_a_missing_server_is_named():
    with pytest.raises(McpServerMissing, match="no program 'no-such-mcp-server'"):
        mcp_tools(["no-such-mcp-server", "--stdio"])
    with pytest.raises(McpServerMissing, match="could not be started or reached"):
        mcp_tools(f"http://127.0.0.1:{_free_port()}/mcp", start_timeout=10,
                  verbose=False)


def test_a_crashing_server_says_what_it_wrote(tmp_path):
    with pytest.raises(McpServerFailed, match="cannot open its rooms database"):
        mcp_tools(TEST_SERVER + ["crash-start"], verbose=False)
    with mcp_tools(TEST_SERVER + ["ok", str(tmp_path / "log")], verbose=False) as tools:
        with pytest.raises(McpServerFailed, match="crashed or exited"):
            tools.call("crash_now")
        t0 = time.monotonic()
        with pytest.raises(McpServerFailed, match="crashed or exited|not running"):
            tools.call("room_hours", {"room": "Garden Room"})
        assert time.monotonic() - t0 < 1


def test_a_hanging_server_times_out(starter, tmp_path):
    t0 = time.monotonic()
    with pytest.raises(McpServerFailed, match="did not answer within 5 s .the MCP hand"):
        mcp_tools(TEST_SERVER + ["hang-start"], timeout=3, start_timeout=5,
                  verbose=False)
    assert time.monotonic() - t0 < 20  # including stopping it
    with mcp_tools(TEST_SERVER + ["ok", str(tmp_path / "log")], timeout=3,
                   verbose=False) as tools:
        hang = [t for t in tools if t.name == "hang_now"]
        t0 = time.monotonic()
        run = run_tools(starter, "Go.", hang, tool_choice="hang_now", max_steps=1,
                        temperature=0, max_tokens=60, verbose=False)
        assert run.steps[1].kind == "error" and "it hangs" in run.steps[1].text
        assert time.monotonic() - t0 < 30
        assert tools.call("room_hours", {"room": "Garden Room"})  # still answers


@pytest.mark.parametrize("mode, said", [
    ("garbage-start", "not MCP during the MCP handshake (Invalid JSON"),
    ("garbage-call", "not MCP during the call room_hours (Invalid JSON"),
    ("bad-result", "not valid MCP (content: Input should be a valid list)"),
])
def test_a_malformed_reply_is_named(mode, said):
    t0 = time.monotonic()
    with pytest.raises(McpServerFailed) as caught:
        with mcp_tools(TEST_SERVER + [mode], timeout=10, verbose=False) as tools:
            tools.call("room_hours", {})
    assert said in str(caught.value)
    assert time.monotonic() - t0 < 10  # seen at once, not waited out


def test_schemas_lose_pydantic_titles_but_keep_a_title_argument():
    schema = {"title": "searchArguments", "type": "object", "properties": {
        "title": {"title": "Title", "type": "string"},
        "author": {"title": "Author", "type": "string"}}}
    assert clean_schema(schema) == {"type": "object", "properties": {
        "title": {"type": "string"}, "author": {"type": "string"}}}
