"""The dashboards end to end: Voila started here, a real headless Chromium.

Needs Debian's `chromium` (apt-get install -y chromium; .ci/run does it) and
Playwright for Python (the test extra); never `playwright install`.
Screenshots go to $KIT_TEST_ARTIFACTS (default: a kit-test-artifacts folder
in the system temp folder).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from kit.commands.dashboard import free_port, start
from kit.models.starter import STARTER

CHROMIUM = os.environ.get("KIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("KIT_TEST_ARTIFACTS")
                 or Path(tempfile.gettempdir()) / "kit-test-artifacts")
READY_S = 120_000  # ms: a Voila page starts a kernel, imports, loads a model


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM}: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="pip install playwright (the test extra)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@contextmanager
def voila(name, tmp_path):
    log_path = tmp_path / f"voila-{name}.log"
    with open(log_path, "w") as log:
        proc, url = start(name, free_port(8900), log=log)
        try:
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def open_dashboard(browser, url, selector):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    # Offline, the icon font from a CDN never loads: do not wait for "load".
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(selector, timeout=READY_S)
    return page


def shot(page, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def reply_length(page) -> int:
    lengths = page.eval_on_selector_all(".kit-chat-assistant",
                                        "els => els.map(e => e.innerText.length)")
    return lengths[-1] if lengths else 0


def test_chat_streams_stops_and_exports(browser, tmp_path):
    exports = tmp_path / "exports"
    prompt = "Tell me a long story about a library and its cat."
    with voila("chat", tmp_path) as url:
        page = open_dashboard(browser, url, ".kit-chat-prompt input")
        page.wait_for_function("document.querySelector('.kit-chat-status')"
                               ".innerText.includes('Ready')", timeout=READY_S)
        page.fill(".kit-chat-folder input", str(exports))
        page.fill(".kit-chat-prompt input", prompt)
        page.press(".kit-chat-prompt input", "Enter")  # Enter sends
        seen = [0]
        deadline = time.monotonic() + 120
        while len(seen) < 4 and time.monotonic() < deadline:
            n = reply_length(page)
            if n > seen[-1]:
                seen.append(n)
            time.sleep(0.05)
        assert len(seen) >= 4, f"the reply did not grow while streaming: {seen}"
        assert page.input_value(".kit-chat-prompt input") == ""  # box cleared
        page.click(".kit-chat-stop")
        page.wait_for_function("document.querySelector('.kit-chat-status')"
                               ".innerText.includes('stopped by you')", timeout=30_000)
        page.wait_for_selector(".kit-chat-send:not([disabled])", timeout=10_000)
        final = reply_length(page)
        time.sleep(0.5)
        assert reply_length(page) == final  # nothing more arrives after Stop
        shown = page.eval_on_selector_all(".kit-chat-assistant", "els => els.map("
                                          "e => e.innerText)")[-1]
        page.click(".kit-chat-export")
        page.wait_for_selector(".kit-chat-exported a", timeout=30_000)
        shot(page, "dashboard-chat")
    md = next(exports.glob("*.md")).read_text()
    data = json.loads(next(exports.glob("*.json")).read_text())
    assert prompt in md
    user, answer = data["turns"]
    assert user == {**user, "role": "user", "content": prompt}
    assert answer["role"] == "assistant" and answer["stats"]["stop_reason"] == "cancelled"
    assert answer["content"] in md and answer["content"][:20] in shown.replace("\n", " ")
    assert data["model"]["sha256"] == STARTER["sha256"]


def test_arena_blind_vote(browser, tmp_path):
    with voila("arena", tmp_path) as url:
        page = open_dashboard(browser, url, ".kit-arena-prompt input")
        headers = page.eval_on_selector_all(".kit-arena-header", "e => e.map(x => x.innerText)")
        assert headers == ["Model A", "Model B"]  # blind: no names yet
        page.fill(".kit-arena-prompt input", "Name one colour, in one word.")
        page.press(".kit-arena-prompt input", "Enter")
        page.wait_for_function(
            "[...document.querySelectorAll('.kit-arena-speed')]"
            ".every(e => e.innerText.includes('tok/s'))", timeout=240_000)
        page.click(".kit-arena-vote >> nth=0")
        page.wait_for_selector(".kit-arena-result:has-text('You chose Model A')")
        # the tally is the last thing the vote updates
        page.wait_for_selector(".kit-arena-tally:has-text('1 round(s)')", timeout=10_000)
        headers = page.eval_on_selector_all(".kit-arena-header", "e => e.map(x => x.innerText)")
        # names revealed (which models depends on what else is installed)
        assert all("smollm2:135m" in h and not h.startswith("Model ") for h in headers)
        winner = page.inner_text(".kit-arena-result").split(": ", 1)[1].rstrip(".")
        assert f"{winner}\t1\t100%" in page.inner_text(".kit-arena-tally")
        shot(page, "dashboard-arena")


def test_fit_answers_and_updates(browser, tmp_path):
    with voila("fit", tmp_path) as url:
        page = open_dashboard(browser, url, ".kit-fit-answer:has-text('in all')")
        first = page.inner_text(".kit-fit-answer")
        assert re.match(r"(Fits|Does not fit)", first)
        labels = page.eval_on_selector(".kit-fit select",
                                       "s => [...s.options].map(o => o.label)")
        big = next(x for x in labels if "mistral:7b" in x)
        page.select_option(".kit-fit select >> nth=0", label=big)
        page.wait_for_function(f"document.querySelector('.kit-fit-answer').innerText "
                               f"!== {json.dumps(first)}", timeout=30_000)
        assert "MB in all" in page.inner_text(".kit-fit-answer")
        assert page.eval_on_selector(".kit-fit img", "e => e.naturalWidth") > 100
        shot(page, "dashboard-fit")


def test_benchmarks_measure_and_plot(browser, tmp_path):
    with voila("benchmarks", tmp_path) as url:
        page = open_dashboard(browser, url, ".kit-bench-about")
        page.wait_for_selector(".kit-bench-about:has-text('Measured just now')",
                               timeout=180_000)
        page.wait_for_function("document.querySelector('.kit-bench img')"
                               ".naturalWidth > 100", timeout=30_000)
        assert "tg" in page.inner_text(".kit-bench table")
        shot(page, "dashboard-benchmarks")


def test_kit_dashboard_prints_a_loopback_url(tmp_path):
    port = free_port(8950)
    proc = subprocess.Popen([sys.executable, "-m", "kit", "dashboard", "fit",
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=120) as r:
            assert r.status == 200 and "Will it fit" in r.read().decode()
    finally:
        proc.terminate()
        proc.wait(20)


def test_bad_dashboard_name_and_busy_port():
    out = subprocess.run([sys.executable, "-m", "kit", "dashboard", "nope"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "chat" in out.stderr  # argparse lists them
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "kit", "dashboard", "fit",
                              "--port", str(busy)], capture_output=True, text=True)
    assert out.returncode == 1 and f"Port {busy} is in use" in out.stderr
