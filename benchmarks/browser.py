"""Dashboards in a real browser: time to ready, time to the first token.

Starts each dashboard with Voila (as `kit dashboard` does) and drives Debian's
chromium headless through Playwright, then prints:

- dashboard ready: from asking for the page to its widgets on screen
  (Voila starts a kernel per page, runs the notebook, the browser renders);
- first token visible: from the Enter key (timed inside the page) to the
  first words of the answer on screen, side by side with the model's own
  time to first token (from the answer's figures), so the difference is
  what the browser path adds.

Figures only, never pass/fail: shared machines are noisy. Targets: ready
under 10 s, first token under 1 s (starter model).

    python benchmarks/browser.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHROMIUM = os.environ.get("KIT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
READY = {"chat": ".kit-chat-prompt input", "arena": ".kit-arena-prompt input",
         "fit": ".kit-fit-answer:has-text('in all')", "benchmarks": ".kit-bench-about"}
# Sets window.t0 at Enter and window.t1 when the newest reply first shows text.
WATCH = """() => {
  window.t0 = null; window.t1 = null;
  document.addEventListener('keydown', e => {
    if (e.key === 'Enter' && window.t0 === null) window.t0 = performance.now();
  }, true);
  new MutationObserver(() => {
    const r = [...document.querySelectorAll('.kit-chat-assistant')].pop();
    if (window.t0 !== null && window.t1 === null && r &&
        !r.innerText.trim().endsWith('...') && r.innerText.length > 8)
      window.t1 = performance.now();
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def open_page(browser, url, selector):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    t0 = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(selector, timeout=180_000)
    return page, time.perf_counter() - t0


def first_tokens(page, rounds):
    """[(browser first token s, model ttft s)] for `rounds` prompts."""
    page.wait_for_function("document.querySelector('.kit-chat-status')"
                           ".innerText.includes('Ready')", timeout=180_000)
    page.evaluate(WATCH)
    out = []
    for i in range(rounds):
        page.evaluate("() => { window.t0 = null; window.t1 = null; }")
        page.fill(".kit-chat-prompt input", f"Tell me about libraries, part {i + 1}.")
        page.press(".kit-chat-prompt input", "Enter")
        page.wait_for_function("window.t1 !== null", timeout=120_000)
        seen = page.evaluate("() => (window.t1 - window.t0) / 1000")
        page.click(".kit-chat-stop")
        page.wait_for_selector(".kit-chat-status:has-text('stopped')", timeout=60_000)
        status = page.inner_text(".kit-chat-status")
        ttft = float(re.search(r"first token after ([\d.]+) s", status).group(1))
        out.append((seen, ttft))
        page.click(".kit-chat-reset")  # each round starts from an empty chat
        page.wait_for_selector(".kit-chat-status:has-text('cleared')")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"No browser at {CHROMIUM}: run `make browser` (apt-get install chromium).")
        return 1
    from playwright.sync_api import sync_playwright

    from kit.commands.dashboard import start
    from kit.models.starter import install_starter

    install_starter(quiet=True)
    ready, tokens = {}, []
    logs = Path(tempfile.mkdtemp(prefix="kit-bench-browser-"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for name, selector in READY.items():
            with open(logs / f"{name}.log", "w") as log:
                proc, url = start(name, log=log)
                try:
                    times = []
                    for i in range(a.rounds if name == "chat" else 1):
                        page, took = open_page(browser, url, selector)
                        times.append(took)
                        if name == "chat" and i == 0:
                            tokens = first_tokens(page, a.rounds)
                        page.close()
                    ready[name] = times
                finally:
                    proc.terminate()
                    proc.wait(20)
        browser.close()
    print(f"CPU cores: {os.cpu_count()}, load average: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("Dashboard ready (page requested -> widgets rendered), target < 10 s:")
    for name, times in ready.items():
        print(f"  {name:<11} median {statistics.median(times):5.2f} s  "
              f"({', '.join(f'{t:.2f}' for t in times)})")
    seen = [s for s, _ in tokens]
    model = [m for _, m in tokens]
    print("First streamed token visible after Enter (starter model), target < 1 s:")
    print(f"  in the browser  median {statistics.median(seen):5.2f} s  "
          f"({', '.join(f'{t:.2f}' for t in seen)})")
    added = statistics.median(seen) - statistics.median(model)
    print(f"  model's own TTFT median {statistics.median(model):5.2f} s  "
          f"(what the browser path adds: {added:+.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
