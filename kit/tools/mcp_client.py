"""Tools from any Model Context Protocol server, for the kit's agent loop (notebook 11).

>>> with mcp_tools(kit_server_command()) as tools:      # starts `kit mcp serve`
...     print([t.name for t in tools])
...     run = run_tools(model, "Which books by Jane Austen do we have?", tools)
['search_catalogue', 'books_on_loan', 'days_between', 'day_of_week', ...]

A server is a command to start (a list, or a string split like a shell's)
that speaks MCP over stdio, or the URL of a streamable HTTP server. Each of
its tools becomes a kit Tool: its schema as the server gives it, and a
function that calls the server. A tool the server does not mark as only
reading (readOnlyHint) is marked needs_confirmation, so run_tools asks the
person first; when such a call then asks the person itself (MCP elicitation),
the yes already given answers it, and any other question is declined.

The SDK speaks asyncio; the kit's loop (and a notebook) calls plain
functions. So the connection lives on an event loop in a thread of its own,
and every wait has a limit: a server that is missing, crashes, hangs or
sends what is not MCP becomes a KitError naming it, never a hung notebook.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import os
import shlex
import shutil
import sys
import tempfile
import threading
import time

from kit.engines.tool_schema import NAME, Tool, from_schema
from kit.errors import KitError, McpServerFailed, McpServerMissing

PASSED_ENV = ("KIT_HOME", "HF_HOME", "HF_HUB_OFFLINE")  # what a stdio server inherits
TICK = 0.05  # seconds between looks at a pending answer


def kit_server_command(folder=None, search: str = "auto") -> list[str]:
    """The command that starts `kit mcp serve` with this Python (no PATH needed)."""
    command = [sys.executable, "-m", "kit", "mcp", "serve", "--search", search]
    return command + (["--folder", str(folder)] if folder else [])


def mcp_tools(server, **options) -> "McpTools":
    """Connect to an MCP server and list its tools; use it in a `with` block."""
    return McpTools(server, **options)


def clean_schema(node, in_properties: bool = False):
    """A tool's input schema without pydantic's "title" labels (noise for a
    small model); a property that is *named* title stays."""
    if isinstance(node, list):
        return [clean_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    return {k: clean_schema(v, k == "properties" and not in_properties)
            for k, v in node.items() if in_properties or k != "title"}


def result_text(result) -> str:
    """An MCP tool result as the text a model reads."""
    parts = []
    for block in result.content or []:
        text = getattr(block, "text", None)
        parts.append(text if text is not None else
                     f"[{getattr(block, 'type', 'content')} omitted: the model reads text]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def quiet_sdk_logs() -> None:
    """The SDK logs a traceback for a line it cannot parse; the kit raises a
    KitError saying the same, so a notebook shows one message, not two. A
    level someone set on the "mcp" logger is kept."""
    import logging

    sdk = logging.getLogger("mcp")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.CRITICAL)


def _leaf(exc: BaseException) -> BaseException:
    """The first real error inside anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class McpTools(list):
    """The tools of one MCP server (a list of kit Tools) and its connection.

    timeout: seconds for each answer; start_timeout: for starting and the
    handshake. key: sent as Authorization: Bearer to a URL (only when
    given). env: extra environment variables for a stdio server (it
    inherits only PATH, HOME and a few more, plus KIT_HOME and HF_HOME).
    """

    def __init__(self, server, *, timeout: float = 20.0, start_timeout: float = 60.0,
                 key: str | None = None, env: dict | None = None, cwd=None,
                 mode: str = "legacy", verbose: bool = True):
        super().__init__()
        self.timeout, self.verbose, self.mode = float(timeout), verbose, mode
        self.start_timeout = float(start_timeout)
        self.url = server if isinstance(server, str) and \
            server.startswith(("http://", "https://")) else None
        self.command = None if self.url else self._command(server)
        self.label = self.url or shlex.join(self.command)
        # sent only when given: a room's key must not go to every URL tried
        self.key = key or ""
        self.env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        self.env.update(env or {})
        self.cwd = cwd
        self.skipped: list[str] = []  # tools that cannot be offered, and why
        self.asked: list[tuple[str, str]] = []  # the server's questions, our answers
        self._approved = 0  # calls in flight that a person allowed
        self._fault: str = ""  # what the transport could not read
        self._refused = 0  # an HTTP server's error status, if it sent one
        self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
        self._client, self._stop = None, None
        self._closed = threading.Event()  # the connection task has ended
        self._ready: concurrent.futures.Future = concurrent.futures.Future()
        quiet_sdk_logs()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="kit-mcp-client")
        self._thread.start()
        self._keeper = asyncio.run_coroutine_threadsafe(self._keep(), self._loop)
        try:
            self._wait(self._ready, self.start_timeout, "the MCP handshake")
            listing = self._wait(self._submit(self._client.list_tools()), self.timeout,
                                 "listing its tools")
            self.extend(self._convert(listing.tools))
        except BaseException:
            self.close()
            raise

    # ---- the connection, on its own event loop ---------------------------------

    @staticmethod
    def _command(server) -> list[str]:
        command = shlex.split(server) if isinstance(server, str) else \
            [str(part) for part in server or []]
        if not command:
            raise McpServerMissing("(none)", "no command was given")
        if command[0] == "kit" and shutil.which("kit") is None:
            command = [sys.executable, "-m", "kit"] + command[1:]
        if shutil.which(command[0]) is None:
            raise McpServerMissing(shlex.join(command), f"there is no program "
                                   f"{command[0]!r} on this computer's PATH")
        return command

    def _transport(self):
        if self.url:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}

            async def note(response) -> None:  # the SDK's error does not say which
                if response.status_code >= 400:
                    self._refused = response.status_code

            http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(
                self.timeout, read=max(self.timeout, 300.0)),
                event_hooks={"response": [note]})
            return http, streamable_http_client(self.url, http_client=http)
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(command=self.command[0], args=self.command[1:],
                                       env=self.env, cwd=self.cwd)
        return None, stdio_client(params, errlog=self._errlog)

    async def _keep(self) -> None:
        """Open the connection, hold it until close(), then shut it (one task,
        as anyio wants: the server process stops with it)."""
        from contextlib import AsyncExitStack

        from mcp import Client
        from mcp.types import Implementation

        self._stop = asyncio.Event()
        try:
            async with AsyncExitStack() as stack:
                http, transport = self._transport()
                if http is not None:
                    await stack.enter_async_context(http)
                self._client = await stack.enter_async_context(Client(
                    # the handshake may wait for a slow start; each call has
                    # its own limit (call_tool's read_timeout_seconds, _wait)
                    transport, mode=self.mode,
                    read_timeout_seconds=max(self.start_timeout, self.timeout),
                    elicitation_callback=self._elicit, message_handler=self._message,
                    client_info=Implementation(name="kit", version="0.1")))
                self._ready.set_result(True)
                await self._stop.wait()
        except BaseException as exc:  # handed to whoever waits on the handshake
            if not self._ready.done():
                self._ready.set_exception(_leaf(exc))
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            self._closed.set()

    async def _message(self, message) -> None:
        if isinstance(message, Exception):  # a line that is not JSON-RPC
            errors = getattr(message, "errors", None)
            text = errors()[0].get("msg", "") if callable(errors) else str(message)
            self._fault = self._fault or " ".join(str(text).split())[:200]

    async def _elicit(self, context, params):
        """The server asks the person something during a call."""
        from mcp.types import ElicitResult

        schema = getattr(params, "requested_schema", None) or {}
        props = schema.get("properties") or {}
        yes_no = props and all(p.get("type") == "boolean" for p in props.values())
        if self._approved and yes_no:
            answer = ElicitResult(action="accept", content={k: True for k in props})
        else:
            answer = ElicitResult(action="decline")
        self.asked.append((params.message, answer.action))
        return answer

    def _submit(self, coroutine) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def said(self) -> str:
        """The end of what a stdio server wrote on stderr."""
        try:
            self._errlog.seek(0)
            text = self._errlog.read()
        except (OSError, ValueError):
            return ""
        return " ".join(text.split())[-400:]

    def _wait(self, future, timeout: float, what: str):
        """The future's result; a clear KitError if the server fails meanwhile."""
        from mcp import MCPError
        from mcp.types import REQUEST_TIMEOUT
        from pydantic import ValidationError

        deadline = time.monotonic() + timeout
        while True:
            try:
                return future.result(TICK)
            except concurrent.futures.TimeoutError:
                pass
            except concurrent.futures.CancelledError:
                raise McpServerFailed(self.label, f"stopped while {what}", self.said())
            except (KitError, KeyboardInterrupt):
                raise
            except OSError as exc:
                raise McpServerMissing(self.label, str(exc) or type(exc).__name__) \
                    from exc
            except MCPError as exc:
                gone = "closed" in str(exc).lower() or self._closed.is_set()
                problem = (self._http_problem(what) if self._refused else
                           f"did not answer within {timeout:g} s ({what}): it "
                           "hangs" if exc.code == REQUEST_TIMEOUT else
                           f"stopped (crashed or exited) during {what}" if gone else
                           f"answered {what} with an error: {exc}")
                raise McpServerFailed(self.label, problem, self.said()) from exc
            except ValidationError as exc:
                first = exc.errors()[0] if exc.error_count() else {}
                where = ".".join(str(x) for x in first.get("loc", ()))
                raise McpServerFailed(self.label, f"sent a reply to {what} that is not "
                                      f"valid MCP ({where}: {first.get('msg', exc)})",
                                      self.said()) from exc
            except Exception as exc:
                leaf = _leaf(exc)
                if isinstance(leaf, OSError) or "connect" in type(leaf).__name__.lower():
                    raise McpServerMissing(self.label, f"{type(leaf).__name__}: "
                                           f"{leaf}") from exc
                raise McpServerFailed(self.label, f"failed during {what} "
                                      f"({type(leaf).__name__}: {leaf})",
                                      self.said()) from exc
            problem = ""
            if self._fault:
                problem = f"sent something that is not MCP during {what} ({self._fault})"
            elif self._closed.is_set():
                problem = f"stopped (crashed or exited) during {what}"
            elif time.monotonic() > deadline:
                problem = f"did not answer within {timeout:g} s ({what}): it hangs"
            if problem:
                if future is not self._ready:
                    future.cancel()
                raise McpServerFailed(self.label, problem, self.said())

    def _http_problem(self, what: str) -> str:
        status = self._refused
        why = {401: "the key is wrong or missing: pass key=... (the server's key)",
               403: "this host name or web page is not allowed",
               404: "nothing is served at this path (kit mcp serve uses /mcp)"}
        return (f"refused {what} with HTTP {status}"
                + (f" ({why[status]})" if status in why else ""))

    # ---- the tools -------------------------------------------------------------

    def _convert(self, listed) -> list[Tool]:
        out = []
        for item in listed:
            if not NAME.match(item.name or ""):
                self.skipped.append(f"{item.name}: a name the kit cannot offer")
                continue
            ann = item.annotations
            changes = not (ann is not None and ann.read_only_hint is True) or \
                (ann is not None and ann.destructive_hint is True)
            try:
                tool = from_schema({"name": item.name, "description":
                                    item.description or item.title or item.name,
                                    "parameters": clean_schema(item.input_schema)})
            except KitError as exc:
                self.skipped.append(f"{item.name}: {exc}")
                continue
            out.append(dataclasses.replace(
                tool, function=self._function(item.name, changes), confirm=changes))
        if self.skipped and self.verbose:
            print(f"Not offered to the model ({len(self.skipped)}): "
                  + "; ".join(self.skipped), flush=True)
        return out

    def _function(self, name: str, changes: bool):
        def call_mcp_tool(**arguments):
            return self.call(name, arguments, approved=changes)

        call_mcp_tool.__name__ = name
        return call_mcp_tool

    def call(self, name: str, arguments: dict | None = None,
             approved: bool = False) -> str:
        """Call one tool and return its text; an error result raises RuntimeError
        (run_tools shows it to the model)."""
        if self._client is None or self._closed.is_set():
            raise McpServerFailed(self.label, "is not running any more (closed, "
                                  "crashed or exited)", self.said())
        self._approved += int(approved)
        before = len(self.asked)
        try:
            result = self._wait(self._submit(self._client.call_tool(
                name, arguments or {}, read_timeout_seconds=self.timeout)),
                self.timeout, f"the call {name}")
        finally:
            self._approved -= int(approved)
            # printed here, not on the connection's thread: Jupyter shows a
            # thread's prints in the cell that started the thread
            for message, action in self.asked[before:] if self.verbose else ():
                said = "yes (a person allowed this call)" if action == "accept" \
                    else "declined (no person was asked about this call)"
                print(f"  the server asks: {message} -> {said}", flush=True)
        text = result_text(result)
        if result.is_error:
            raise RuntimeError(f"the server says: {text}")
        return text

    def close(self) -> None:
        """Stop the connection (and a stdio server's process); safe to repeat."""
        if not self._thread.is_alive():
            return
        if self._ready.done() and not self._ready.cancelled() \
                and self._ready.exception() is None:
            self._loop.call_soon_threadsafe(self._stop.set)
        else:  # still in the handshake (a hanging server): stop waiting for it
            self._keeper.cancel()
        # the SDK gives a stdio server 2 s to leave, then terminates, then kills it
        if not self._closed.wait(10):
            self._keeper.cancel()
            self._closed.wait(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()
        self._errlog.close()
        self._client = None

    def __enter__(self) -> "McpTools":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<McpTools {self.label}: {', '.join(t.name for t in self)}>"
