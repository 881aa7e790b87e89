"""Token probabilities: what they cost, and how fast the explorer answers.

Run with `python benchmarks/probs.py [--model smollm2:135m] [--rounds 5]
[--no-browser]`. Prints, never asserts (shared machines are noisy).

1. Generation speed with `logprobs=True, top_logprobs=10` against without,
   interleaved round by round in this one run (target: ratio >= 0.9).
2. The token explorer in a real browser (Voila + Debian chromium driven by
   Playwright): seconds from a click on a candidate to redrawn bars
   (target: < 0.3 s with the starter model).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

from kit.engines import load

PROMPT = "Once upon a time, in a lighthouse by the sea, there lived"
N_GEN = 64
CHROMIUM = os.environ.get("KIT_CHROMIUM", "/usr/bin/chromium")
BARS = "[...document.querySelectorAll('.kit-tokens-bar')].map(e => e.innerText).join('|')"


def tg(model, **probs) -> float:
    """Generated tokens per second for one greedy run of N_GEN tokens."""
    stream = model.generate(PROMPT, max_tokens=N_GEN, temperature=0, seed=1,
                            repeat_penalty=1.0, **probs)
    stream.text
    if probs:
        assert len(stream.logprobs) == stream.stats.generated_tokens
    return stream.stats.gen_tps


def speed(name: str, rounds: int, threads: int) -> None:
    model = load(name, n_threads=threads, quiet=True)
    tg(model), tg(model, logprobs=True, top_logprobs=10)  # warm up both paths
    plain, probs = [], []
    for _ in range(rounds):  # interleaved, so both see the same machine load
        plain.append(tg(model))
        probs.append(tg(model, logprobs=True, top_logprobs=10))
    p, q = statistics.median(plain), statistics.median(probs)
    print(f"{name}, {N_GEN} tokens, median of {rounds} interleaved rounds "
          f"({model.describe()})")
    print(f"  without logprobs:                 {p:7.1f} tok/s  "
          f"(runs: {', '.join(f'{x:.1f}' for x in plain)})")
    print(f"  logprobs=True, top_logprobs=10:   {q:7.1f} tok/s  "
          f"(runs: {', '.join(f'{x:.1f}' for x in probs)})")
    print(f"  ratio: {q / p:.2f} (target >= 0.9)")


def browser(clicks: int) -> None:
    if not os.path.exists(CHROMIUM):
        print(f"Browser timing skipped: no browser at {CHROMIUM}.")
        return
    from playwright.sync_api import sync_playwright

    from kit.commands.dashboard import free_port, start

    with tempfile.TemporaryFile("w+") as log:
        proc, url = start("tokens", free_port(8990), log=log)
        try:
            with sync_playwright() as pw:
                b = pw.chromium.launch(executable_path=CHROMIUM, args=[
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run"])
                page = b.new_page(viewport={"width": 1200, "height": 900})
                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_selector(".kit-tokens-bar:has-text('%')", timeout=180_000)
                first, whole = [], []
                for i in range(clicks):
                    # timed inside the page: the click, then the first frame in
                    # which a bar changed, and the frame in which the text did
                    # (the widget sets the text last: all the bars are new)
                    t = page.evaluate(f"""async () => {{
                        const bars = () => {BARS};
                        const text = () => document.querySelector('.kit-tokens-text').innerText;
                        const b0 = bars(), x0 = text(), t0 = performance.now();
                        let t1 = null;
                        document.querySelectorAll('button.kit-tokens-pick, .kit-tokens-pick button')[{i % 3}].click();
                        while (text() === x0) {{
                            if (t1 === null && bars() !== b0) t1 = performance.now();
                            await new Promise(r => requestAnimationFrame(r));
                        }}
                        const t2 = performance.now();
                        return [((t1 ?? t2) - t0) / 1000, (t2 - t0) / 1000]; }}""")
                    first.append(t[0]), whole.append(t[1])
                    time.sleep(0.5)  # let every update of this click arrive
                b.close()
        finally:
            proc.terminate()
            proc.wait(20)
    print(f"Token explorer in the browser (starter model), {clicks} clicks, "
          "seconds from the click (target < 0.3 s):")
    for label, times in (("first bar redrawn", first), ("all bars and text", whole)):
        print(f"  {label:18} median {statistics.median(times):.3f}, "
              f"min {min(times):.3f}, max {max(times):.3f}  "
              f"({', '.join(f'{t:.3f}' for t in times)})")


def machine_note() -> str:
    load1, load5, _ = os.getloadavg()
    return (f"Machine: {os.cpu_count()} cores, load average {load1:.1f} (1 min), "
            f"{load5:.1f} (5 min); figures on a shared machine are noisy.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2:135m")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1,
                    help="1 by default: steadier on a shared machine")
    ap.add_argument("--clicks", type=int, default=8)
    ap.add_argument("--no-browser", action="store_true")
    a = ap.parse_args()
    print(machine_note())
    speed(a.model, a.rounds, a.threads)
    if not a.no_browser:
        browser(a.clicks)
    print(machine_note())


if __name__ == "__main__":
    main()
