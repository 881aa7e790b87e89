"""Tools over MCP: success on notebook 11's task set, per model, and what MCP costs.

Prints two tables (figures only, never pass/fail: shared machines are noisy):

1. each model answering kit.tools.mcp_lesson.TASKS through `kit mcp serve`
   (stdio, the kit's own MCP client): calls right, answers right, s/task;
   these are the figures notebook 11 shows as recorded;
2. the time of one tool call through MCP beside the same function called
   in-process (median of `--calls` calls, side by side in one run), and the
   time from starting the server to its tool list.

    python benchmarks/tools_mcp.py [--tasks 7] [--calls 20] [--skip-qwen] [--json FILE]

(Not named mcp.py: a script's own folder comes first on sys.path, where a
file called mcp.py would hide the mcp package.)
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STARTER, QWEN = "smollm2:135m", "qwen2.5-coder:1.5b"


def success(tools, names: list[str], n_tasks: int) -> list[dict]:
    from kit.engines import load
    from kit.tools.mcp_lesson import TASKS, score, summary

    rows = []
    for name in names:
        model = load(name, quiet=True)
        results = score(model, tools, TASKS[:n_tasks])
        for r in results:
            print(f"  {name}: {r['call']} -> {r['answer'][:60]!r} "
                  f"(call {'ok' if r['call ok'] else 'WRONG'}, "
                  f"answer {'ok' if r['answer ok'] else 'WRONG'})", flush=True)
        rows.append(summary(name, results))
    return rows


def overhead(tools, calls: int) -> dict:
    from kit.tools.library import search_catalogue

    mcp, local = [], []
    for _ in range(calls):  # alternating, so both see the same machine
        t0 = time.perf_counter()
        tools.call("search_catalogue", {"author": "Austen"})
        mcp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        search_catalogue(author="Austen")
        local.append(time.perf_counter() - t0)
    a, b = statistics.median(mcp), statistics.median(local)
    return {"MCP call ms": round(a * 1000, 2), "in-process ms": round(b * 1000, 2),
            "ratio": round(a / b, 1) if b else None}


def main() -> None:
    from kit.models.registry import installed
    from kit.tools.mcp_client import kit_server_command, mcp_tools
    from kit.util import text_table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=7)
    p.add_argument("--calls", type=int, default=20)
    p.add_argument("--skip-qwen", action="store_true")
    p.add_argument("--search", default="keywords", choices=("auto", "meaning", "keywords"),
                   help="how the server searches documents (keywords: as notebook 11)")
    p.add_argument("--json", help="also write the figures to this file")
    a = p.parse_args()
    names = [STARTER]
    if not a.skip_qwen:
        if QWEN in installed():
            names.append(QWEN)
        else:
            print(f"{QWEN} is not installed (kit pull {QWEN}): starter only.")
    t0 = time.perf_counter()
    with mcp_tools(kit_server_command(search=a.search), timeout=120,
                   verbose=False) as tools:
        start = time.perf_counter() - t0
        print(f"server started and listed {len(tools)} tools in {start:.1f} s")
        cost = overhead(tools, a.calls)
        rows = success(tools, names, a.tasks)
    print("\n1. notebook 11's tasks through kit mcp serve (a call required first)")
    print(text_table(rows))
    print("\n2. one tool call: through MCP (stdio) and in-process, medians")
    print(text_table([{**cost, "start to tool list s": round(start, 1)}]))
    if a.json:
        Path(a.json).write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d"), "machine": platform.machine(),
            "cpus": __import__("os").cpu_count(), "tasks": rows, "call": cost,
            "start_s": round(start, 1)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
