"""Tool calls and fill in the middle: success rates, grammar overhead, FIM latency.

Prints three tables (figures only, never pass/fail: shared machines are noisy,
and a busy machine slows the 1.5B model far more than the starter):

1. success on notebook 09's task set (right tool, arguments valid and right),
   per model, with and without the grammar;
2. tokens/s writing a call with the grammar and without it, side by side in
   one run (alternating rounds), and their ratio (target: at least 0.8);
3. time to the first token of a fill-in-the-middle completion through
   `kit serve` (/v1/completions with suffix, streamed) in the middle of a
   200-line Python file: a cold request (loading the model and reading the
   whole file), then the same file again (top_k=1 rather than temperature 0,
   so the engine may reuse what it read, as it does while you type).

    python benchmarks/tools.py [--tasks 12] [--rounds 3] [--skip-qwen] [--qwen PATH]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STARTER, QWEN = "smollm2:135m", "qwen2.5-coder:1.5b"


def success(models: dict, n_tasks: int) -> list[dict]:
    from kit.tools.library import TASKS, score

    rows = []
    for name, model in models.items():
        for constrain in (True, False):
            t0 = time.perf_counter()
            results = score(model, TASKS[:n_tasks], constrain=constrain)
            ok = sum(r["ok"] for r in results)
            rows.append({"model": name, "grammar": "on" if constrain else "off",
                         "right": f"{ok}/{len(results)}",
                         "rate": f"{ok / len(results):.0%}",
                         "s/task": f"{(time.perf_counter() - t0) / len(results):.1f}"})
            print(f"  {name}, grammar {rows[-1]['grammar']}: {rows[-1]['right']}",
                  flush=True)
    return rows


def overhead(models: dict, rounds: int) -> list[dict]:
    """The same required call, with and without the grammar, rounds alternating."""
    from kit.tools.library import TOOLS

    ask = [{"role": "user", "content": "Which books by Jane Austen do we have?"}]
    rows = []
    for name, model in models.items():
        tps = {True: [], False: []}
        for _ in range(rounds):
            for constrain in (True, False):
                answer = model.chat(ask, tools=TOOLS, tool_choice="search_catalogue",
                                    constrain=constrain, top_k=1, max_tokens=40)
                try:
                    answer.text
                except Exception:  # no valid call without the grammar: figures stand
                    pass
                if answer.stats.generated_tokens > 4:
                    tps[constrain].append(answer.stats.gen_tps)
        on, off = (statistics.median(tps[c]) if tps[c] else 0.0 for c in (True, False))
        rows.append({"model": name, "grammar tok/s": f"{on:.1f}",
                     "free tok/s": f"{off:.1f}",
                     "ratio": f"{on / off:.2f}" if off else "-"})
        print(f"  {name}: {rows[-1]}", flush=True)
    return rows


def source_file(lines: int = 200) -> str:
    """A plausible Python module of `lines` lines (functions on a catalogue)."""
    out = ['"""Small helpers for a library catalogue."""', "import datetime", ""]
    i = 0
    while len(out) < lines:
        out += [f"def loan_days_{i}(start: str, end: str) -> int:",
                f'    """Days between two dates, for loan rule {i}."""',
                "    a = datetime.date.fromisoformat(start)",
                "    b = datetime.date.fromisoformat(end)",
                f"    return (b - a).days + {i}", "", ""]
        i += 1
    return "\n".join(out[:lines]) + "\n"


def fim_latency(qwen: str, rounds: int) -> list[dict]:
    import httpx

    from kit.models.registry import resolve
    from kit.server import start

    text = source_file()
    cut = text.index("def loan_days_14")
    prefix = text[:cut] + "def overdue_fee(days_late: int) -> float:\n    return "
    suffix = "\n\n\n" + text[cut:]
    rows = []
    served = resolve(qwen).name
    with start([qwen], n_ctx=4096, quiet=True) as server:
        for attempt in range(rounds):
            t0 = time.perf_counter()
            first, pieces = None, []
            with httpx.stream("POST", f"{server.openai_url}/completions", timeout=900,
                              json={"model": served, "prompt": prefix, "suffix": suffix,
                                    "max_tokens": 16, "top_k": 1,
                                    "stream": True}) as r:
                for line in r.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    piece = json.loads(line[6:])["choices"][0]["text"]
                    if piece and first is None:
                        first = time.perf_counter() - t0
                    pieces.append(piece)
            total = time.perf_counter() - t0
            rows.append({"request": "cold (load + read)" if attempt == 0 else
                         f"again ({attempt})", "first token s": f"{first or total:.2f}",
                         "total s": f"{total:.2f}",
                         "completion": "".join(pieces).strip()[:30]})
            print(f"  {rows[-1]}", flush=True)
    return rows


def main(argv=None):
    from kit.engines import load
    from kit.util import text_table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--skip-qwen", action="store_true")
    p.add_argument("--qwen", default=QWEN, help="its kit name, or a .gguf path")
    a = p.parse_args(argv)
    models = {STARTER: load(STARTER, quiet=True)}
    if not a.skip_qwen:
        models[QWEN] = load(a.qwen, quiet=True)
    print(f"Tool-call success on {a.tasks} tasks (tool_choice required):")
    table1 = success(models, a.tasks)
    print("Writing one call, with and without the grammar:")
    table2 = overhead(models, a.rounds)
    table3 = fim_latency(a.qwen, a.rounds) if not a.skip_qwen else []
    print("\n" + text_table(table1, right=("right", "rate", "s/task")))
    print("\n" + text_table(table2, right=("grammar tok/s", "free tok/s", "ratio")))
    if table3:
        print(f"\nFill in the middle, {QWEN}, 200-line file, through kit serve:")
        print(text_table(table3, right=("first token s", "total s")))


if __name__ == "__main__":
    main()
