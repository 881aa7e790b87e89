"""Widgets without a browser: set values, click buttons, check the state.

The model is the real starter model; answers are generated in the widgets'
own background threads, so the tests wait for them (`.wait()`).
"""
import json
import time

import ipywidgets as W
import pytest

from kit.arena import Contestant, Round, Tally, default_contestants
from kit.errors import BadParameter
from kit.fit import estimate_numbers
from kit.widgets.arena import ArenaWidget
from kit.widgets.bench import BenchPanel, find_results
from kit.widgets.chat import ChatWidget, markdown_html
from kit.widgets.fit import FitWidget, verdict

PNG = b"\x89PNG"


def press_enter(widget, text):
    """What the browser sends: the text and Enter's newline, in one update."""
    widget.prompt.value = text + "\n"


def record_replies(chat):
    """Every value each assistant bubble takes, in order (no polling)."""
    seen = []

    def on_children(change):
        for child in change["new"]:
            if "kit-chat-assistant" in child._dom_classes and not hasattr(child, "_rec"):
                child._rec = True
                child.observe(lambda c: seen.append(c["new"]), "value")

    chat.history.observe(on_children, "children")
    return seen


@pytest.fixture
def chat(tmp_path):
    w = ChatWidget(max_tokens=48, temperature=0, folder=tmp_path / "exports")
    yield w
    w.stop()
    w.wait()


# ---- chat -------------------------------------------------------------------

def test_enter_sends_and_the_reply_streams(chat):
    seen = record_replies(chat)
    # 48 tokens: long enough to span several redraws (a one-word answer can
    # finish within two on a fast machine)
    press_enter(chat, "Describe Paris, the capital of France, in a few sentences.")
    assert chat.unsent == "" and chat.stop_button.disabled is False
    chat.wait()
    assert len(set(seen)) >= 3, "the reply should grow piece by piece"
    lengths = [len(v) for v in seen]
    assert lengths[-1] >= max(lengths[1:-1], default=0)
    assert "Paris" in chat.history.children[-1].value
    assert [t["role"] for t in chat.conv.turns] == ["user", "assistant"]
    assert "tokens used" in chat.context.value and chat.meter.value > 0
    assert "generated" in chat.status.value
    assert chat.send_button.disabled is False and chat.stop_button.disabled is True


def test_enter_while_answering_queues_the_message_and_says_so(chat):
    chat.max_tokens.value = 32
    press_enter(chat, "Count to twenty.")
    press_enter(chat, "Second question")
    assert chat.unsent == "" and [t for t, _ in chat.queue] == ["Second question"]
    assert "1 message waiting" in chat.status.value  # and why it waits
    waiting = chat.history.children[-1]
    assert "kit-chat-queued" in waiting._dom_classes and "waits" in waiting.value
    chat.wait()
    said = [t["content"] for t in chat.conv.turns if t["role"] == "user"]
    assert said == ["Count to twenty.", "Second question"]
    assert "kit-chat-queued" not in waiting._dom_classes and chat.queue == []
    assert [t["role"] for t in chat.conv.turns][-1] == "assistant"


def test_keys_typed_fast_arrive_together_and_are_never_merged(chat):
    # The browser sends keys in batches while the kernel is busy: Enter and
    # the first letters of the next message can arrive in one update.
    chat.max_tokens.value = 32
    chat.prompt.value = "Tell me about libraries in five paragraphs.\nW"
    assert chat.unsent == "W"  # kept in the box: nothing rewritten under the keys
    chat.prompt.value = "Tell me about libraries in five paragraphs.\nWhat is 2 + 2?"
    assert chat.unsent == "What is 2 + 2?"
    chat.prompt.value += "\n"
    chat.wait()
    said = [t["content"] for t in chat.conv.turns if t["role"] == "user"]
    assert said == ["Tell me about libraries in five paragraphs.", "What is 2 + 2?"]
    deadline = time.monotonic() + 5
    while chat.prompt.value and time.monotonic() < deadline:
        time.sleep(0.05)  # once typing pauses, the sent lines leave the box
    assert chat.prompt.value == "" and chat.unsent == ""


def test_keys_typed_while_the_box_is_emptied_are_kept(chat):
    from kit.widgets.chat import QUIET_S

    chat.max_tokens.value = 16
    press_enter(chat, "Name a fruit.")
    time.sleep(QUIET_S * 2)
    assert chat.prompt.value == ""  # the pause emptied the box
    # The browser had typed "Wh" before it saw the box emptied, so it sends
    # the old text with those keys; then the emptied box with the next keys.
    chat.prompt.value = "Name a fruit.\nWh"
    chat.prompt.value = "at colour is it?"
    assert chat.unsent == "What colour is it?"
    chat.prompt.value += "\n"
    chat.wait()
    said = [t["content"] for t in chat.conv.turns if t["role"] == "user"]
    assert said == ["Name a fruit.", "What colour is it?"]


def test_a_message_too_long_says_what_the_page_can_do(tmp_path):
    chat = ChatWidget(n_ctx=256, max_tokens=16, folder=tmp_path)
    press_enter(chat, "library " * 400)
    chat.wait()
    error = chat.history.children[-1]
    assert "kit-chat-error" in error._dom_classes
    assert "Shorten the message" in error.value and "n_ctx" not in error.value
    assert chat.conv.turns == []


def test_the_message_box_comes_before_the_system_prompt(chat):
    texts = []

    def walk(w):
        if isinstance(w, (W.Text, W.Textarea)):
            texts.append(w)
        for child in getattr(w, "children", ()):
            walk(child)
    walk(chat)
    assert texts[0] is chat.prompt and chat.system in texts


def test_send_button_uses_the_system_prompt_and_settings(chat):
    chat.system.value = "You are a pirate."
    chat.temperature.value, chat.max_tokens.value = 0.3, 16
    chat.prompt.value = "Say hello."
    chat.send_button.click()
    chat.wait()
    assert chat.conv.system == "You are a pirate."
    turn = chat.conv.transcript[-1]
    assert turn["settings"]["temperature"] == 0.3 and turn["settings"]["max_tokens"] == 16
    assert turn["stats"]["generated_tokens"] <= 16


def test_stop_ends_the_answer_and_keeps_it(chat):
    chat.max_tokens.value = 1024
    press_enter(chat, "Write a very long story about a library.")
    while chat.stream is None or chat.stream.stats.generated_tokens < 3:
        assert chat.busy
        time.sleep(0.01)
    chat.stop_button.click()
    chat.wait(10)
    assert not chat.busy
    st = chat.conv.transcript[-1]["stats"]
    assert st["stop_reason"] == "cancelled" and st["generated_tokens"] < 100
    assert "stopped by you" in chat.status.value


def test_empty_sends_are_ignored_and_reset_forgets_what_waits(chat):
    assert chat.ask("   ") is False
    chat.max_tokens.value = 64
    assert chat.ask("Count to twenty.") is True
    assert chat.ask("Another one") is True  # waits its turn
    assert chat.busy and len(chat.queue) == 1
    chat.reset_button.click()  # forgets what waits
    assert chat.queue == [] and not chat.busy and chat.conv.turns == []


def test_a_full_context_drops_old_turns_with_a_visible_notice(tmp_path):
    chat = ChatWidget(n_ctx=256, max_tokens=16, temperature=0, folder=tmp_path)
    for i in range(10):
        chat.conv.add("user", f"Question {i} about the opening hours of the library?")
        chat.conv.add("assistant", f"Answer {i}: the library opens at nine.")
    press_enter(chat, "And on Sunday?")
    chat.wait()
    notes = [c for c in chat.history.children if "kit-chat-notice" in c._dom_classes]
    assert notes and "Dropped the oldest" in notes[0].value
    assert "of 256 tokens used" in chat.context.value


def test_reset_and_export(chat, tmp_path):
    press_enter(chat, "Name a fruit.")
    chat.wait()
    chat.export_button.click()
    md = next((tmp_path / "exports").glob("*.md")).read_text()
    data = json.loads(next((tmp_path / "exports").glob("*.json")).read_text())
    assert "Name a fruit." in md and data["turns"][1]["content"] in md
    assert data["model"]["name"] == "smollm2:135m"
    assert "download=" in chat.exported.value and "base64," in chat.exported.value
    chat.reset_button.click()
    assert chat.conv.turns == [] and chat.history.children == ()
    assert "0 of 2048 tokens used" in chat.context.value


def test_export_to_a_bad_folder_shows_the_fix(chat, tmp_path):
    (tmp_path / "file").write_text("x")
    chat.folder.value = str(tmp_path / "file" / "sub")
    assert chat.export() is None
    assert "Choose a folder" in chat.exported.value


def test_unknown_model_is_a_message_not_a_crash(tmp_path):
    chat = ChatWidget(model="nope:1b", folder=tmp_path)
    press_enter(chat, "hi")
    chat.wait()
    errors = [c for c in chat.history.children if "kit-chat-error" in c._dom_classes]
    assert errors and "nope:1b" in errors[0].value and "kit setup" in errors[0].value
    assert chat.send_button.disabled is False


def test_markdown_is_rendered_and_html_is_escaped():
    out = markdown_html("**bold** <script>alert(1)</script>\n\n- a\n- b")
    assert "<strong>bold</strong>" in out and "<li>a</li>" in out
    assert "<script>" not in out and "&lt;script&gt;" in out


# ---- arena ------------------------------------------------------------------

def test_default_contestants():
    assert default_contestants(["a:1b", "b:2b", "c:3b"], n=3) == [
        Contestant("a:1b"), Contestant("b:2b"), Contestant("c:3b")]
    one = default_contestants(["smollm2:135m"])
    assert [c.temperature for c in one] == [0.2, 1.2] and one[0].label != one[1].label
    with pytest.raises(BadParameter, match="kit setup"):
        default_contestants([])


def test_tally_counts_wins_and_ties():
    t = Tally()
    t.record("x", ["x", "y"])
    t.record(None, ["x", "y"])
    t.record("y", ["x", "y"])
    t.record("y", ["x", "y"])
    assert t.rows() == [("y", 2, 0.5), ("x", 1, 0.25)] and t.ties == 1
    assert "(4 rounds)" in t.table()
    with pytest.raises(BadParameter):
        t.record("z", ["x", "y"])


def test_blind_round_hides_then_reveals():
    cs = [Contestant("m", 0.2), Contestant("m", 1.2), Contestant("n", 0.7)]
    shuffled = {tuple(Round(cs, blind=True, seed=s).slots) for s in range(20)}
    assert len(shuffled) > 1  # blind columns are shuffled
    r = Round(cs, blind=True, seed=1)
    assert [r.header(i) for i in range(3)] == ["Model A", "Model B", "Model C"]
    t = Tally()
    said = r.vote(2, t)
    assert r.header(2) == r.slots[2].label and r.slots[2].label in said
    assert t.wins[r.slots[2].label] == 1
    with pytest.raises(BadParameter, match="one vote per round"):
        r.vote(0, t)
    with pytest.raises(BadParameter, match="all different"):
        Round([Contestant("m"), Contestant("m")])
    assert Round(cs[:2]).header(0) == cs[0].label  # not blind: names shown


def test_arena_widget_blind_round(tmp_path):
    # Other tests may register variants; this round pits the starter against itself.
    pair = default_contestants(["smollm2:135m"])
    arena = ArenaWidget(pair, blind=True, max_tokens=12)
    assert [h.value for h in arena.headers] == ["<b>Model A</b>", "<b>Model B</b>"]
    assert all(b.disabled for b in arena.votes)
    press_enter(arena, "Name one colour.")
    arena.wait()
    assert all(a.value for a in arena.answers)
    assert all("tok/s" in s.value for s in arena.speeds)
    assert all("Model" in h.value for h in arena.headers)  # still hidden
    arena.votes[1].click()
    assert all("smollm2:135m (temperature" in h.value for h in arena.headers)
    assert arena.tally.rounds == 1 and "1 round(s)" in arena.table.value
    arena.vote(0)  # a second vote on the same round is refused
    assert arena.tally.rounds == 1 and "one vote per round" in arena.result.value


def test_arena_defaults_ignore_copies_other_notebooks_left(kit_home, starter_path):
    from kit.models.registry import register

    register("smollm2:135m", starter_path, source="starter")
    register("smollm2:135m-ct", starter_path, engine="ctransformers")
    register("smollm2:135m-q8_0", starter_path, source="quantize")
    arena = ArenaWidget()
    assert [(c.model, c.temperature) for c in arena.contestants()] == [
        ("smollm2:135m", 0.2), ("smollm2:135m", 1.2)]  # as the page says
    assert "smollm2:135m-ct" in arena.pickers[0].options  # still choosable


def test_arena_stop_skips_the_columns_still_waiting():
    arena = ArenaWidget(max_tokens=512)
    press_enter(arena, "Write a long story about a lighthouse.")
    while arena.stream is None or arena.stream.stats.generated_tokens < 2:
        assert arena.busy
        time.sleep(0.01)
    arena.stop_button.click()
    arena.wait(20)
    assert "skipped" in arena.speeds[1].value
    assert arena.ask_button.disabled is False


# ---- fit and benchmarks -----------------------------------------------------

def test_verdict_says_fits_or_short_and_why():
    small = estimate_numbers(98_000_000, 30, 3, 64, 2048, ram_available=5_000_000_000)
    assert verdict(small).startswith("Fits, with")
    assert "KV cache" in verdict(small) and "in all" in verdict(small)
    big = estimate_numbers(4_920_000_000, 32, 8, 128, 2048, ram_available=5_000_000_000)
    assert verdict(big).startswith("Does not fit:") and "shorter context" in verdict(big)
    assert "trained for 1024" in verdict(small, trained_ctx=1024)


def test_fit_widget_updates_when_choices_change():
    w = FitWidget(model="smollm2:135m")
    first = w.answer.value
    assert "Fits" in first and w.picture.value[:4] == PNG
    w.computer.value = 5_000_000_000
    w.model.value = "mistral:7b-q4_k_m"
    w.n_ctx.value = 32768
    assert "Does not fit" in w.answer.value and w.answer.value != first


def test_bench_panel_reads_saved_results(tmp_path):
    from kit.bench import run_bench, to_json

    df = run_bench("smollm2:135m", n_prompt=8, n_gen=4, reps=1,
                   measure_bandwidth=False, quiet=True)
    to_json(df, tmp_path / "speed.json")
    from kit.evaluate import EvalResult

    # what `kit eval --json` prints: a list of EvalResult.row()
    row = EvalResult("smollm2:135m", "Q4_1", 98_360_000, 5.7, 21.5, 0.0, 1.0, True,
                     "smollm2:135m", 512, 2, 512, 3.0).row()
    (tmp_path / "eval.json").write_text(json.dumps([row]))
    (tmp_path / "notes.json").write_text("not json")  # ignored, not fatal
    found = find_results(tmp_path)
    assert found["files"] == ["eval.json", "speed.json"]
    assert sorted(t[:2] for t in found["speed"]["test"]) == ["pp", "tg"]
    panel = BenchPanel(folder=tmp_path)
    assert "speed.json" in panel.about.value and panel.speed.value[:4] == PNG
    assert panel.quality_plot.value[:4] == PNG and "tokens per second" in panel.table.value
    assert "tps_mean" not in panel.table.value and "ttft_s" not in panel.table.value
    from kit.widgets.bench import speed_table

    assert (speed_table(found["speed"])["spread (±, tokens/s)"] == "-").all()  # 1 run
    assert list(found["quality"]["model"]) == ["smollm2:135m"]
    assert found["quality"]["file_bytes"][0] == pytest.approx(98_360_000)


def test_bench_panel_measures_only_llama_cpp_models(kit_home, starter_path):
    from kit.models.registry import register
    from kit.widgets.bench import measure_now

    register("smollm2:135m", starter_path, source="starter")
    register("smollm2:135m-ct", starter_path, engine="ctransformers")
    df = measure_now()
    assert set(df["model"]) == {"smollm2:135m"}


def test_bench_panel_measures_when_nothing_is_saved(tmp_path):
    panel = BenchPanel(folder=tmp_path / "empty")
    panel.wait()
    assert "Measured just now" in panel.about.value
    assert panel.speed.value[:4] == PNG and "smollm2:135m" in panel.table.value
    assert "no evaluation results yet" in panel.quality.value
