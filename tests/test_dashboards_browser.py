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

ARTIFACTS = Path(os.environ.get("KIT_TEST_ARTIFACTS")
                 or Path(tempfile.gettempdir()) / "kit-test-artifacts")
READY_S = 120_000  # ms: a Voila page starts a kernel, imports, loads a model


@contextmanager
def voila(name, tmp_path, **options):
    log_path = tmp_path / f"voila-{name}.log"
    with open(log_path, "w") as log:
        proc, url = start(name, free_port(8900), log=log, **options)
        proc.url = url
        try:
            yield url if not options else proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def open_dashboard(browser, url, selector, width=1200):
    page = browser.new_page(viewport={"width": width, "height": 900})
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


PROMPT_BOX = ".kit-chat-prompt textarea"
NEWEST_VISIBLE = """() => {
    const log = document.querySelector('.kit-chat-log');
    const bubbles = log.querySelectorAll('.kit-msg');
    const last = bubbles[bubbles.length - 1].getBoundingClientRect();
    const box = log.getBoundingClientRect();
    return last.bottom <= box.bottom + 2 && last.bottom >= box.top;
}"""


OVERFLOWING = """() => {
    const log = document.querySelector('.kit-chat-log');
    return log.scrollHeight > log.clientHeight + 40;
}"""
MORE = "Go on with the story, and tell me more about the cat."


def type_and_send(page, text):
    """Type like a person in a hurry (20 ms a key), then Enter; what the box showed."""
    page.locator(PROMPT_BOX).press_sequentially(text, delay=20)
    shown = page.input_value(PROMPT_BOX)
    page.press(PROMPT_BOX, "Enter")
    return shown


def user_bubbles(page):
    return page.eval_on_selector_all(".kit-chat-user", "els => els.map("
                                     "e => e.innerText.replace(/^You:\\s*/, ''))")


def test_chat_streams_stops_and_exports(browser, tmp_path):
    exports = tmp_path / "exports"
    first_prompt = "Say hello to a library in two sentences."
    # long enough that the log must scroll on a narrow page
    prompt = ("Tell me a long story about a library and its cat. The cat sleeps "
              "on the returns desk and guards the rare books at night.")
    with voila("chat", tmp_path) as url:
        page = open_dashboard(browser, url, PROMPT_BOX, width=420)
        page.wait_for_function("document.querySelector('.kit-chat-status')"
                               ".innerText.includes('Ready')", timeout=READY_S)
        page.fill(".kit-chat-folder input", str(exports))
        # the first text field is the message box, not the system prompt
        assert page.eval_on_selector("textarea, input[type=text]",
                                     "e => e.closest('.kit-chat-prompt') !== null")
        shown = type_and_send(page, first_prompt)  # Enter sends
        assert shown == first_prompt
        page.wait_for_function("document.querySelector('.kit-chat-assistant')"
                               "?.innerText.length > 20", timeout=60_000)
        # no need to wait for all of it (it may have ended already)
        page.eval_on_selector(".kit-chat-stop", "b => b.disabled || b.click()")
        page.wait_for_selector(".kit-chat-send:not([disabled])", timeout=30_000)
        assert user_bubbles(page) == [first_prompt]
        assert page.input_value(PROMPT_BOX) == ""  # box cleared, nothing left over
        shown = type_and_send(page, prompt)  # a second message: not merged
        assert shown == prompt
        page.wait_for_function("document.querySelectorAll('.kit-chat-user')"
                               ".length === 2", timeout=30_000)
        assert user_bubbles(page) == [first_prompt, prompt]
        seen = [0]
        deadline = time.monotonic() + 120
        while len(seen) < 4 and time.monotonic() < deadline:
            n = reply_length(page)
            if n > seen[-1]:
                seen.append(n)
            time.sleep(0.05)
        assert len(seen) >= 4, f"the reply did not grow while streaming: {seen}"
        assert page.input_value(PROMPT_BOX) == ""  # box cleared
        # The log follows the answer: once it overflows, the newest is in view.
        # An answer may end before the log is full: then ask for more.
        deadline = time.monotonic() + 300
        while not page.evaluate(OVERFLOWING) and time.monotonic() < deadline:
            if page.eval_on_selector(".kit-chat-send", "b => !b.disabled"):
                assert type_and_send(page, MORE) == MORE
            time.sleep(0.5)
        assert page.evaluate(OVERFLOWING), "the log never filled up"
        assert page.evaluate(NEWEST_VISIBLE), "the newest answer is below the fold"
        if page.eval_on_selector(".kit-chat-send", "b => !b.disabled"):
            asked = len(user_bubbles(page))  # that answer ended: one more to stop
            type_and_send(page, MORE)
            page.wait_for_function("document.querySelectorAll('.kit-chat-user')"
                                   f".length === {asked + 1}", timeout=30_000)
        page.click(".kit-chat-stop")
        page.wait_for_function("document.querySelector('.kit-chat-status')"
                               ".innerText.includes('stopped by you')", timeout=30_000)
        page.wait_for_selector(".kit-chat-send:not([disabled])", timeout=10_000)
        final = reply_length(page)
        time.sleep(0.5)
        assert reply_length(page) == final  # nothing more arrives after Stop
        assert page.evaluate(NEWEST_VISIBLE)
        shown = page.eval_on_selector_all(".kit-chat-assistant", "els => els.map("
                                          "e => e.innerText)")[-1]
        page.click(".kit-chat-export")
        page.wait_for_selector(".kit-chat-exported a", timeout=30_000)
        shot(page, "dashboard-chat")
    md = next(exports.glob("*.md")).read_text()
    data = json.loads(next(exports.glob("*.json")).read_text())
    assert prompt in md and first_prompt in md
    said = [t["content"] for t in data["turns"] if t["role"] == "user"]
    assert said[:2] == [first_prompt, prompt]  # exactly what was typed, one each
    assert set(said[2:]) <= {MORE} and len(data["turns"]) == 2 * len(said)
    answer = data["turns"][-1]
    assert answer["role"] == "assistant" and answer["stats"]["stop_reason"] == "cancelled"
    assert answer["content"] in md and answer["content"][:20] in shown.replace("\n", " ")
    assert data["model"]["sha256"] == STARTER["sha256"]


def test_chat_queues_messages_typed_fast_and_loses_no_key(browser, tmp_path):
    # A learner in a hurry: two messages typed at 20 ms a key, Enter after
    # each, without waiting; a third while the answers are being written.
    first = "Tell me about the library in five paragraphs."
    second = "What is 2 + 2?"
    third = "And what is 3 + 3?"
    with voila("chat", tmp_path) as url:
        page = open_dashboard(browser, url, PROMPT_BOX)
        page.wait_for_function("document.querySelector('.kit-chat-status')"
                               ".innerText.includes('Ready')", timeout=READY_S)
        box = page.locator(PROMPT_BOX)
        box.press_sequentially(first, delay=20)
        box.press("Enter")
        box.press_sequentially(second, delay=20)
        box.press("Enter")
        page.wait_for_selector(".kit-chat-queued", timeout=30_000)
        box.press_sequentially(third, delay=20)
        box.press("Enter")
        page.wait_for_function("document.querySelectorAll('.kit-chat-user')"
                               ".length === 3", timeout=30_000)
        waiting = page.inner_text(".kit-chat-status")
        shot(page, "dashboard-chat-queued")
        assert "waiting" in waiting, waiting
        page.wait_for_function("document.querySelectorAll('.kit-chat-assistant')"
                               ".length === 3", timeout=300_000)
        page.wait_for_selector(".kit-chat-send:not([disabled])", timeout=300_000)
        said = user_bubbles(page)
        assert said == [first, second, third], said
        assert page.query_selector(".kit-chat-queued") is None
        page.wait_for_function(f"document.querySelector({json.dumps(PROMPT_BOX)})"
                               ".value === ''", timeout=10_000)


def test_arena_blind_vote(browser, tmp_path):
    with voila("arena", tmp_path) as url:
        page = open_dashboard(browser, url, ".kit-arena-prompt textarea")
        headers = page.eval_on_selector_all(".kit-arena-header", "e => e.map(x => x.innerText)")
        assert headers == ["Model A", "Model B"]  # blind: no names yet
        page.fill(".kit-arena-prompt textarea", "Name one colour, in one word.")
        page.press(".kit-arena-prompt textarea", "Enter")
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


def test_documents_index_ask_and_see_sources(browser, tmp_path, embedding_model_path):
    folder = tmp_path / "my documents"
    folder.mkdir()
    (folder / "loans.md").write_text("DVDs can be borrowed for 7 days and renewed "
                                     "once. Books are lent for 21 days.")
    (folder / "hours.txt").write_text("The library opens at 9 am and closes at 8 pm "
                                      "from Monday to Thursday.")
    (folder / "photo.txt").write_bytes(bytes(64))  # binary, with a text extension
    with voila("documents", tmp_path) as url:
        page = open_dashboard(browser, url, ".kit-docs-folder input")
        page.fill(".kit-docs-folder input", str(folder))
        page.click(".kit-docs-index")
        page.wait_for_selector(".kit-docs-report:has-text('Indexed 2 files')",
                               timeout=120_000)
        assert "photo.txt: looks binary" in page.inner_text(".kit-docs-report")
        bar = page.eval_on_selector(".kit-docs-progress .progress-bar",
                                    "e => e.style.width")
        assert bar == "100%"  # the progress bar ends full
        page.select_option(".kit-docs-model select", label="smollm2:135m")  # quick
        page.wait_for_selector(".kit-docs-ask:not([disabled])", timeout=10_000)
        page.fill(".kit-docs-question input", "How long can I borrow a DVD?")
        page.click(".kit-docs-ask")
        page.wait_for_selector(".kit-docs-sources:has-text('[1] loans.md')",
                               timeout=180_000)
        assert page.inner_text(".kit-docs-answer").strip()
        assert "Source [1], from loans.md:" in page.input_value(".kit-docs-prompt textarea")
        shot(page, "dashboard-documents")


def _kernels(pid) -> list:
    """The live kernels under Voila. A kernel that has exited but is not yet
    reaped (a zombie) or is gone between listing and reading counts as given back."""
    import psutil

    alive = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if "ipykernel" in " ".join(child.cmdline()):
                alive.append(child)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return alive


def test_a_closed_page_gives_its_kernel_back(browser, tmp_path):
    with voila("fit", tmp_path, cull_after=4) as proc:
        page = open_dashboard(browser, proc.url, ".kit-fit-answer:has-text('in all')")
        assert len(_kernels(proc.pid)) == 1  # the page's kernel, holding its state
        page.close()
        deadline = time.monotonic() + 90
        while _kernels(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _kernels(proc.pid) == []


def test_sigterm_stops_kit_dashboard_and_voila(tmp_path):
    import psutil
    import signal

    port = free_port(8970)
    proc = subprocess.Popen([sys.executable, "-m", "kit", "dashboard", "fit",
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children  # Voila
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == []
        import socket

        with pytest.raises(ConnectionRefusedError):  # nothing listens there now
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        proc.kill()


BARS = "[...document.querySelectorAll('.kit-tokens-bar')].map(e => e.innerText).join('|')"


def test_tokens_pick_a_candidate_and_the_bars_move_on(browser, tmp_path):
    with voila("tokens", tmp_path) as url:
        page = open_dashboard(browser, url, ".kit-tokens-bar:has-text('%')")
        picks = page.eval_on_selector_all(".kit-tokens-pick",
                                          "e => e.map(x => x.innerText)")
        assert len(picks) == 10 and all(picks)
        before = page.evaluate(BARS)
        page.click(".kit-tokens-pick >> nth=1")  # the second likeliest: steer
        token = picks[1].replace("␣", " ")
        page.wait_for_function(
            "t => document.querySelector('.kit-tokens-text').innerText.includes(t)",
            arg=token.strip(), timeout=60_000)
        page.wait_for_function(f"{BARS} !== {json.dumps(before)}", timeout=60_000)
        assert "You picked" in page.inner_text(".kit-tokens-status")
        page.click(".kit-tokens-choose")
        page.wait_for_selector(".kit-tokens-status:has-text('The model drew')",
                               timeout=60_000)
        page.click(".kit-tokens-undo")
        page.wait_for_selector(".kit-tokens-status:has-text('Took the last token back')",
                               timeout=60_000)
        assert token.strip() in page.inner_text(".kit-tokens-text")
        # a slider redraws the bars: top_k 1 leaves one token to draw from
        readout = page.locator(".kit-tokens .widget-readout >> nth=1")  # top_k's
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("1")
        page.keyboard.press("Enter")
        page.wait_for_selector(".kit-tokens-bar:has-text('removed by top_k')",
                               timeout=60_000)
        assert "100.0% with these settings" in page.inner_text(".kit-tokens-bar >> nth=0")
        shot(page, "dashboard-tokens")
