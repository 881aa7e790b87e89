"""Notebook 11's task set over MCP, its score, and one JSON-RPC exchange shown raw.

>>> with mcp_tools(kit_server_command()) as tools:
...     rows = score(model, tools)            # calls right, answers right
>>> for line in exchange(kit_server_command()):   # what travels over stdio
...     print(line)
-> {"jsonrpc": "2.0", "id": 1, "method": "initialize", ...}
<- {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": ...}}
"""
from __future__ import annotations

import json
import queue
import subprocess
import threading
import time

from kit.errors import KitError, McpServerFailed


def _has(arg: str, *words: str):
    return lambda a: any(w in str(a.get(arg, "")).lower() for w in words)


def _is(**expected):
    return lambda a: all(str(a.get(k, "")).strip() == v for k, v in expected.items())


# (question, the tool to call, a check of its arguments, words one of which
# the answer must hold). The answers come from the kit's catalogue and its
# bundled documents (kit/data), through `kit mcp serve`.
TASKS = [
    ("Which books by Jane Austen do we have?", "search_catalogue",
     _has("author", "austen"), ("emma", "persuasion", "pride and prejudice")),
    ("Is Moby-Dick on loan at the moment?", "search_catalogue",
     _has("title", "moby"), ("2026-12-20", "yes")),
    ("How many days are there from 2026-12-01 to 2026-12-24?", "days_between",
     _is(start="2026-12-01", end="2026-12-24"), ("23",)),
    ("Which day of the week is 2026-12-25?", "day_of_week",
     _is(date="2026-12-25"), ("friday",)),
    ("Which books are due back by 2026-12-05?", "books_on_loan",
     _is(due_by="2026-12-05"), ("plague", "scarlet", "nonsense", "cabbages",
                                "paradise lost")),
    ("What time does the Central Library open on Sundays?", "search_documents",
     _has("query", "sunday"), ("1:00", "1 pm", "1pm", "13:00")),
    ("How long can I keep a DVD?", "search_documents", _has("query", "dvd"),
     ("7 days", "seven days", "one week", "7-day")),
]


def score(model, tools, tasks=None, timeout: float = 60.0, **options) -> list[dict]:
    """Run each task through the agent loop (a call required first, then
    words); was the call right, and does the answer hold the fact?"""
    from kit.tools.loop import run_tools

    options = {"top_k": 1, "max_tokens": 80, **options}
    rows = []
    for question, tool, check, words in tasks or TASKS:
        t0 = time.perf_counter()
        try:
            run = run_tools(model, question, tools, max_steps=2, timeout=timeout,
                            tool_choice="required", verbose=False, **options)
            call = run.calls()[0] if run.calls() else None
            answer = run.answer or ""
        except KitError as exc:  # the model wrote no valid call at all
            call, answer = None, f"({exc})"
        call_ok = bool(call and call.name == tool and check(call.arguments))
        rows.append({"question": question, "call": str(call or "(none)"),
                     "call ok": call_ok,
                     "answer": " ".join(answer.split())[:80],
                     "answer ok": any(w in answer.lower() for w in words),
                     "seconds": round(time.perf_counter() - t0, 1)})
    return rows


def summary(name: str, rows: list[dict]) -> dict:
    """One line of the results table."""
    n = len(rows)
    return {"model": name, "calls right": sum(r["call ok"] for r in rows),
            "answers right": sum(r["answer ok"] for r in rows), "of": n,
            "s/task": round(sum(r["seconds"] for r in rows) / max(n, 1), 1)}


# ---- the protocol itself, one exchange, for reading -----------------------------

HELLO = {"protocolVersion": "2025-11-25", "capabilities": {},
         "clientInfo": {"name": "notebook-11", "version": "1"}}


def exchange(command, call=("day_of_week", {"date": "2026-12-25"}),
             timeout: float = 60.0, width: int = 240) -> list[str]:
    """Start an MCP server over stdio and talk to it by hand: initialize,
    initialized, tools/list, tools/call. Each line as sent (->) or received (<-),
    cut to `width` characters."""
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": HELLO},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": call[0], "arguments": call[1]}},
    ]
    proc = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, encoding="utf-8")
    replies: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [replies.put(line) for line in proc.stdout],
                     daemon=True).start()
    lines = []

    def cut(text: str) -> str:
        return text if len(text) <= width else text[:width - 4] + " ..."

    try:
        for message in messages:
            text = json.dumps(message)
            proc.stdin.write(text + "\n")
            proc.stdin.flush()
            lines.append(cut(f"-> {text}"))
            if "id" not in message:
                continue  # a notification: no reply
            try:
                lines.append(cut(f"<- {replies.get(timeout=timeout).strip()}"))
            except queue.Empty:
                raise McpServerFailed(" ".join(command), f"did not answer "
                                      f"{message['method']} within {timeout:g} s") from None
    finally:
        proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return lines
