"""Tool calling in the Python API (kit.tools): schemas, grammar, the loop.

Mechanics run on the starter with forced calls (fast and repeatable); the
capable model answers the notebook's question once, through its own template.
"""
import contextlib
import io
import json
import threading
import time
from pathlib import Path
from typing import Literal, Optional

import pytest

from kit.engines import load
from kit.errors import BadTool, NoToolCall, ToolsUnsupported, UnknownTool
from kit.tools import as_tools, needs_confirmation, run_tools
from kit.tools.loop import ONCE_MORE
from kit.engines.tool_calls import (FALLBACK_NOTICE, call_grammar, parse_calls,
                             prepare_messages, template_speaks_tools)
from kit.tools.check import check_answer
from kit.tools.library import (TASKS, calculator, delete_book, read_books,
                               search_catalogue)
from kit.engines.base import Stream
from kit.engines.tool_calls import tool_chat
from kit.engines.tool_schema import chosen, from_schema

T1 = dict(n_threads=1, n_ctx=1024, quiet=True)
GREEDY = dict(temperature=0, max_tokens=40)


def shelve(title: str, copies: int = 1, shelf: Optional[str] = None,
           kind: Literal["book", "dvd"] = "book", tags: list[str] = ()) -> str:
    """Put a new item on a shelf.

    title: the item's title
    copies: how many copies arrived
    """
    return f"shelved {copies} x {title}"


def ping() -> str:
    """Say pong."""
    return "pong"


@pytest.fixture(scope="module")
def starter():
    return load("smollm2:135m", **T1)


# ---- tools from functions and schemas -----------------------------------------

def test_schema_from_a_function_uses_hints_defaults_and_docstring():
    (tool,) = as_tools([shelve])
    p = tool.parameters
    assert tool.description == "Put a new item on a shelf."
    assert p["required"] == ["title"]
    assert p["properties"]["copies"] == {"type": "integer",
                                         "description": "how many copies arrived"}
    assert p["properties"]["shelf"] == {"type": "string"}
    assert p["properties"]["kind"] == {"enum": ["book", "dvd"]}
    assert p["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert tool.schema()["function"]["name"] == "shelve"


def test_bad_tools_are_refused_with_the_fix():
    def untyped(title):
        """No hints."""

    with pytest.raises(BadTool, match="'title' has no type hint .*title: str"):
        as_tools([untyped])
    with pytest.raises(BadTool, match="not valid JSON Schema"):
        as_tools([{"type": "function", "function": {
            "name": "find", "parameters": {"type": "object",
                                           "properties": {"q": {"type": "text"}}}}}])
    with pytest.raises(BadTool, match="two tools share this name"):
        as_tools([ping, {"type": "function", "function": {"name": "ping"}}])
    with pytest.raises(BadTool, match="a name is"):
        from_schema({"type": "function", "function": {"name": "no spaces"}})
    with pytest.raises(UnknownTool, match="No tool named 'fly'.*offered: ping"):
        chosen(as_tools([ping]), "fly")
    named = {"type": "function", "function": {"name": "ping"}}
    assert chosen(as_tools([ping, shelve]), named)[0] == "required"


def test_parse_calls_reports_what_does_not_fit():
    tools = as_tools([shelve])
    text = ('Sure.\n<tool_call>\n{"name": "shelve", "arguments": {"title": "Emma"}}'
            '\n</tool_call>\n<tool_call>\n{"name": "fly", "arguments": {}}\n'
            '</tool_call><tool_call>\n{"name": "shelve", "arguments": '
            '{"copies": "two"}}\n</tool_call><tool_call>{"name": ')
    words, calls, problems = parse_calls(text, tools)
    assert words == "Sure."
    assert [(c.name, c.arguments) for c in calls] == [("shelve", {"title": "Emma"})]
    assert any("'fly', which was not offered" in p for p in problems)
    assert any("do not fit" in p and "title" in p for p in problems)
    assert any("not complete JSON" in p for p in problems)


def test_messages_without_template_support_become_text():
    call = {"id": "c1", "type": "function",
            "function": {"name": "ping", "arguments": "{}"}}
    msgs = prepare_messages([{"role": "user", "content": "hi"},
                             {"role": "assistant", "content": None, "tool_calls": [call]},
                             {"role": "tool", "tool_call_id": "c1", "content": "pong"}],
                            as_tools([ping]), native=False)
    assert msgs[0]["role"] == "system" and '"name": "ping"' in msgs[0]["content"]
    assert '<tool_call>\n{"name": "ping", "arguments": {}}' in msgs[2]["content"]
    assert msgs[3] == {"role": "user",
                       "content": "<tool_response>\npong\n</tool_response>"}
    with pytest.raises(BadTool, match="not JSON"):
        prepare_messages([{"role": "assistant", "tool_calls": [
            {"function": {"name": "ping", "arguments": "{oops"}}]}], [], native=True)


def test_grammar_is_accepted_by_llama_cpp(starter):
    from kit.structured import check_grammar

    tools = as_tools([shelve, ping, calculator])
    for mode in ("auto", "required"):
        check_grammar(starter.llm, call_grammar(tools, mode))
    assert call_grammar(tools, "none") is None


# ---- a real model, forced and free -----------------------------------------------

def test_required_call_always_parses_and_fits(starter):
    assert not template_speaks_tools(starter.chat_template)
    answer = starter.chat([{"role": "user", "content": "Shelve two copies of Emma."}],
                          tools=[shelve], tool_choice="required", **GREEDY)
    assert answer.raw.startswith("<tool_call>\n{")  # what the model wrote
    (call,) = answer.tool_calls
    assert call.name == "shelve" and isinstance(call.arguments["title"], str)
    assert answer.called and answer.text == "" and not answer.problems
    assert FALLBACK_NOTICE in answer.stats.notices  # said, not hidden
    msg = answer.message()
    assert json.loads(msg["tool_calls"][0]["function"]["arguments"]) == call.arguments


def test_text_instead_of_a_required_call_is_an_error(starter):
    answer = starter.chat([{"role": "user", "content": "Say hello."}], tools=[ping],
                          tool_choice="required", constrain=False, max_tokens=3,
                          temperature=0)
    with pytest.raises(NoToolCall, match="A tool call was required, but the model "
                       "answered with text"):
        answer.text


def test_tool_choice_none_answers_in_words(starter):
    answer = starter.chat([{"role": "user", "content": "Say hello."}], tools=[ping],
                          tool_choice="none", **GREEDY)
    assert answer.text and not answer.called and "<tool_call>" not in answer.raw
    with pytest.raises(BadTool, match="no tools were offered"):
        starter.chat([{"role": "user", "content": "hi"}], tools=[],
                     tool_choice="required")


def test_engines_without_tools_say_so():
    from kit.engines.ctransformers import CTransformersEngine
    from kit.engines.tool_calls import tool_chat

    engine = object.__new__(CTransformersEngine)  # the class is what decides
    with pytest.raises(ToolsUnsupported, match="ctransformers engine cannot call "
                       "tools.*llama.cpp engine"):
        tool_chat(engine, [{"role": "user", "content": "hi"}], [ping])


def test_a_remote_server_without_tools_is_named(tmp_path):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NoTools(BaseHTTPRequestHandler):
        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send(200, {"object": "list", "data": [{"id": "old-model"}]})

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send(400, {"error": {"message": "tools are not supported"}})

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NoTools)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        remote = load(engine="remote", base_url=f"http://127.0.0.1:{httpd.server_port}",
                      quiet=True)
        with pytest.raises(ToolsUnsupported, match="The server at .* cannot call "
                           "tools: it answered HTTP 400"):
            remote.chat([{"role": "user", "content": "hi"}], tools=[ping]).text
    finally:
        httpd.shutdown()


# ---- the loop: errors, hangs, a person's yes, the step limit -----------------------

def test_loop_feeds_errors_and_timeouts_back(starter):
    def broken() -> str:
        """Always fails."""
        raise RuntimeError("the catalogue is offline")

    def stuck() -> str:
        """Never finishes."""
        time.sleep(30)

    run = run_tools(starter, "Go.", [broken], tool_choice="broken", max_steps=1,
                    verbose=False, **GREEDY)
    kinds = [s.kind for s in run.steps]
    # the step limit: asked once more without tools, so the run ends in words
    assert kinds == ["call", "error", "limit", "answer"], kinds
    assert run.stopped == "step limit" and run.answer.strip()
    tool_message, nudge = run.messages[-3:-1]
    assert tool_message["role"] == "tool" and nudge == {"role": "user",
                                                        "content": ONCE_MORE}
    assert "RuntimeError: the catalogue is offline" in tool_message["content"]
    assert run.messages[-1] == {"role": "assistant", "content": run.answer}
    t0 = time.monotonic()
    run = run_tools(starter, "Go.", [stuck], tool_choice="stuck", max_steps=1,
                    timeout=0.5, verbose=False, **GREEDY)
    assert "did not finish within 0.5 s" in run.steps[1].text
    assert time.monotonic() - t0 < 25  # it did not wait for the tool


def test_a_tool_that_deletes_needs_a_yes(starter, capsys):
    done = []

    @needs_confirmation
    def forget(book_id: int) -> str:
        """Delete a book record for good."""
        done.append(book_id)
        return "deleted"

    run = run_tools(starter, "Delete book 7.", [forget], tool_choice="required",
                    max_steps=3, **GREEDY)
    assert run.steps[1].kind == "refused" and not done
    out = capsys.readouterr().out
    assert "step 1  model calls forget(" in out  # visible
    # a no ends the run at once, with a sentence (not a step-limit notice)
    assert [s.kind for s in run.steps] == ["call", "refused", "answer"]
    assert run.stopped == "refused" and "raise max_steps" not in out
    assert run.answer.startswith("Nothing was done: forget(book_id=")
    assert run.answer.endswith("needs a person's yes, and it was not given.")
    asked = []
    run = run_tools(starter, "Delete book 7.", [forget], tool_choice="required",
                    max_steps=1, ask=lambda call: asked.append(call) or True,
                    verbose=False, **GREEDY)
    assert run.steps[1].kind == "result" and done and asked[0].name == "forget"


def test_schema_only_tools_cannot_run(starter):
    with pytest.raises(BadTool, match="only a schema"):
        run_tools(starter, "hi", [{"type": "function", "function": {"name": "x"}}])


def test_catalogue_and_calculator():
    austen = search_catalogue(author="austen").splitlines()
    assert austen[0] == "Found 7 books: 5 available, 2 on loan (Emma, Persuasion)."
    assert austen[4] == "Emma — Jane Austen (1815, id 4) — on loan until 2026-12-22"
    assert [b["title"] for b in read_books("\n".join(austen))
            if b["status"] == "on loan"] == ["Emma", "Persuasion"]
    assert search_catalogue(author="Nobody") == "No books found for author 'Nobody'."
    assert search_catalogue(title="the").startswith("Found 161 books; the first 20:")
    assert calculator("(120 + 80) / 4") == 50 and calculator("2^10") == 1024
    with pytest.raises(ValueError, match="only numbers"):
        calculator("__import__('os')")
    assert len(TASKS) >= 10


# ---- every run ends in words: a scripted engine through the real parsing ----------

class Cut(str):
    """Words that the scripted engine stops at max_tokens."""


def written_call(name: str, **arguments) -> str:
    """A call as Qwen writes it."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}" \
           "\n</tool_call>"


class Scripted:
    """A fake engine: each turn writes the next text of its script, and the
    kit's own tool_chat parses it (calls, words, tool_choice, the prompt)."""

    engine_name = "scripted"
    capabilities = {"tools": "template"}
    chat_template = None

    def __init__(self, *turns):
        self.turns, self.choices, self.seen = list(turns), [], []

    def chat(self, messages, tools=None, tool_choice="auto", **options):
        self.choices.append(tool_choice)
        return tool_chat(self, messages, tools, tool_choice, **options)

    def format_chat(self, messages, tools=None):
        self.seen.append(messages)
        return "\n".join(str(m["content"]) for m in messages)

    def complete(self, prompt, sampling, grammar=None):
        text = self.turns.pop(0)

        def pieces(stream):
            stream.stats.generated_tokens = len(text.split())
            stream.stats.stop_reason = "length" if isinstance(text, Cut) else "eos"
            yield str(text)

        return Stream(pieces)


def test_a_repeated_call_gets_one_more_turn_without_tools():
    model = Scripted(written_call("search_catalogue", author="Dickens"),
                     written_call("search_catalogue", author="Dickens"),
                     "Four Dickens books are on loan.")
    run = run_tools(model, "Which Dickens books are on loan?", [search_catalogue],
                    verbose=False)
    assert model.choices == ["auto", "auto", "none"]  # the last turn: no tools
    assert [s.kind for s in run.steps] == ["call", "result", "repeat", "answer"]
    assert "asked once more, without tools" in run.steps[2].text
    assert run.answer == "Four Dickens books are on loan." and run.stopped == "repeat"
    assert len(run.calls()) == 1  # the repeat did not run again


def test_the_step_limit_asks_once_more_and_says_so(capsys):
    model = Scripted(written_call("days_between", start="2026-12-07", end="2026-12-12"),
                     written_call("day_of_week", date="2026-12-12"),
                     "Little Dorrit is due in 5 days, on a Saturday.")
    from kit.tools.library import day_of_week, days_between

    run = run_tools(model, "How many days until Little Dorrit is due?",
                    [days_between, day_of_week], max_steps=2)
    out = capsys.readouterr().out
    assert "step 2  the step limit (2 turns) is reached: the model is asked once " \
           "more, without tools" in out
    assert "step 3  model answers: Little Dorrit is due in 5 days" in out
    assert model.choices == ["auto", "auto", "none"]
    assert run.stopped == "step limit" and run.answer.startswith("Little Dorrit")
    # the final turn saw both results, then was asked for words
    users = [m["content"] for m in model.seen[-1] if m["role"] == "user"]
    assert users[-2].endswith("Saturday\n</tool_response>")
    assert users[-1] == ONCE_MORE


def test_no_words_at_all_still_ends_in_words():
    model = Scripted(written_call("search_catalogue", author="Austen"),
                     written_call("search_catalogue", author="Austen"), "  ")
    run = run_tools(model, "Austen?", [search_catalogue], verbose=False)
    assert run.answer == ("The model wrote no answer in words after 1 tool call; "
                          "the results are in run.messages.")
    assert "[no words: the kit says so instead]" in run.steps[-1].text


def test_a_refused_write_ends_with_what_was_not_done(capsys):
    model = Scripted(written_call("delete_book", book_id=7), "Book 7 is deleted.")
    run = run_tools(model, "Delete book 7.", [delete_book], max_steps=1)
    assert run.answer == "Book 7 was not deleted." and run.stopped == "refused"
    assert model.turns == ["Book 7 is deleted."]  # the model was not asked again
    out = capsys.readouterr().out
    assert "step 1  the run ends: Book 7 was not deleted." in out
    assert "max_steps" not in out
    assert search_catalogue(title="Lady Susan").startswith("Found 1 book")


def test_an_answer_cut_at_max_tokens_says_so(capsys):
    model = Scripted(written_call("search_catalogue", author="Austen"),
                     Cut("We have seven books by Jane Austen: Sense and"))
    run = run_tools(model, "Austen?", [search_catalogue], max_tokens=9)
    assert run.cut and run.finish_reason == "length" and run.stopped == "answer"
    assert "[cut off: reached max_tokens after 9 tokens; raise max_tokens for " \
           "the rest]" in capsys.readouterr().out
    assert run.answer == "We have seven books by Jane Austen: Sense and"


def test_a_list_of_lines_reaches_the_model_as_lines():
    def shelf() -> list:
        """The books on the new shelf."""
        return ["Emma — on loan", "Persuasion — available"]

    model = Scripted(written_call("shelf"), "Two books.")
    run = run_tools(model, "What is on the new shelf?", [shelf], verbose=False)
    assert run.messages[2]["content"] == "Emma — on loan\nPersuasion — available"


# ---- checking an answer against the catalogue rows -----------------------------

AUSTEN = search_catalogue(author="Austen")


def test_the_wrong_answer_of_the_first_walk_is_named():
    """What qwen wrote before the rows were laid out one per line."""
    check = check_answer("Emma and Persuasion are available, while Pride and "
                         "Prejudice is on loan.", AUSTEN)
    assert not check.ok
    assert [(c.title, c.said) for c in check.wrong()] == [
        ("Emma", "available"), ("Persuasion", "available"),
        ("Pride and Prejudice", "on loan")]
    assert check.marked() == (
        "Emma [✗ catalogue: on loan until 2026-12-22] and Persuasion [✗ catalogue: "
        "on loan until 2026-12-24] are available, while Pride and Prejudice "
        "[✗ catalogue: available] is on loan.")
    assert str(check).splitlines()[-1] == "Contradicted by the catalogue: 3 of 3 " \
                                          "titles named"


@pytest.mark.parametrize("answer", [
    "We have:\n\n**Available:**\n1. Sense and Sensibility\n2. Pride and "
    "Prejudice\n\n**On loan:**\n- Emma (until 2026-12-22)\n- Persuasion",
    "The available books are Sense and Sensibility and Pride and Prejudice, and "
    "the books on loan are Emma and Persuasion.",
    "All of them are available except Emma and Persuasion, which are on loan.",
    "Emma and Persuasion are checked out until December 22 and 24 December "
    "respectively; Pride and Prejudice is not on loan.",
    "| Title | Status |\n|---|---|\n| Emma | On loan |\n| Persuasion | Not "
    "available |\n| Pride and Prejudice | Available |",
])
def test_right_answers_in_many_layouts_pass(answer):
    check = check_answer(answer, AUSTEN)
    assert check.ok, str(check)
    assert {c.title for c in check.claims if c.ok} >= {"Emma", "Persuasion"}


@pytest.mark.parametrize("answer, title, said", [
    ("- Emma: on loan until 2026-12-24", "Emma", "on loan until 2026-12-24"),
    ("**On loan:**\n- Emma\n- Lady Susan", "Lady Susan", "on loan"),
    ("Northanger Abbey is not available.", "Northanger Abbey", "on loan"),
    ("Persuasion can be borrowed today.", "Persuasion", "available"),
])
def test_each_kind_of_wrong_statement_is_marked(answer, title, said):
    check = check_answer(answer, AUSTEN)
    assert [(c.title, c.said) for c in check.wrong()] == [(title, said)]
    assert f"{title} [✗ catalogue: " in check.marked()


def test_the_answer_qwen_gave_with_one_line_per_book_is_named():
    """The list runs on past ', and': Northanger Abbey is still 'available'."""
    check = check_answer(
        'The books by Jane Austen that are available are "Sense and Sensibility", '
        '"Pride and Prejudice", "Mansfield Park", "Emma", and "Northanger Abbey". '
        'The books on loan are "Persuasion" and "Lady Susan", with the loan dates '
        'set for December 22, 2026, and December 24, 2026 respectively.', AUSTEN)
    assert [(c.title, c.said) for c in check.wrong()] == [
        ("Emma", "available"), ("Lady Susan", "on loan")]
    assert [c.ok for c in check.claims] == [True, True, True, False, True, True,
                                            False]


def test_dates_that_cannot_be_placed_are_not_called_wrong():
    """Qwen's words: the second date is past ', and', so whose is which is unclear."""
    check = check_answer('The books that are on loan are "Emma" and "Persuasion", '
                         'with the loan due until December 22, 2026, and December '
                         '24, 2026, respectively.', AUSTEN)
    assert check.ok and [c.said for c in check.claims] == ["on loan", "on loan"]


def test_a_title_without_a_status_is_not_called_wrong():
    check = check_answer("We have Emma, and also Lady Susan.", AUSTEN)
    assert check.ok and [c.ok for c in check.claims] == [None, None]
    assert "Sense and Sensibility" in check.missing


def test_every_catalogue_row_reads_back():
    import sqlite3

    from kit.tools.library import book_line, catalogue

    db = sqlite3.connect(catalogue())
    rows = db.execute("SELECT title, author, year, id, status, due FROM books").fetchall()
    db.close()
    assert len(rows) == 342
    back = read_books("\n".join(book_line(*r) for r in rows))
    assert [(b["title"], b["author"], b["status"], b["due"]) for b in back] == \
        [(r[0], r[1], r[4], r[5] or "") for r in rows]


# ---- notebook 09: its text says what its cells show --------------------------------

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "09_tools_and_agents.ipynb"


def notebook(*ids: str) -> str:
    """The source of notebook 09's cells with these ids (all markdown if none)."""
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    found = {c["id"]: "".join(c["source"]) for c in cells}
    if not ids:
        return "\n".join(found[c["id"]] for c in cells if c["cell_type"] == "markdown")
    return "\n".join(found[i] for i in ids)


def run_cells(namespace: dict, *ids: str) -> str:
    """Run notebook 09's cells in `namespace`; what they printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(notebook(*ids), namespace)
    return out.getvalue()


def test_notebook_09_text_matches_its_figures_and_rows():
    import sqlite3

    from kit.engines.tool_calls import MAX_PARALLEL
    from kit.tools.library import catalogue

    text = " ".join(notebook().split())
    db = sqlite3.connect(catalogue())
    assert "342 public-domain books" in text
    assert db.execute("SELECT count(*) FROM books").fetchone() == (342,)
    db.close()
    assert "twelve questions" in text and len(TASKS) == 12
    assert "up to four at once" in text and MAX_PARALLEL == 4
    from kit.tools import check

    lines = len(Path(check.__file__).read_text().splitlines())
    assert "about 200 lines in `kit/tools/check.py`" in text and 180 <= lines <= 220
    # "the opposite of the rows above": the rows the notebook prints
    ns = {"check_answer": check_answer}
    rows = run_cells(ns, "c09-18")
    assert "Qwen answered that *Emma* and *Persuasion* were available and *Pride " \
           "and Prejudice* on loan: the opposite of the rows above" in text
    assert "Emma — Jane Austen (1815, id 4) — on loan until 2026-12-22" in rows
    assert "Persuasion — Jane Austen (1817, id 6) — on loan until 2026-12-24" in rows
    assert "Pride and Prejudice — Jane Austen (1813, id 2) — available" in rows
    # "each of the three contradicted titles is marked"
    marked = run_cells(ns, "c09-22f")
    assert "each of the three contradicted titles is marked" in text
    assert marked.count("[✗ catalogue:") == 3


def test_notebook_09_starter_cells_do_what_the_text_says(starter):
    from kit.tools import run_tools as loop

    ns = {"starter": starter, "run_tools": loop}
    out = run_cells(ns, "c09-05", "c09-29")
    text = " ".join(notebook().split())
    # "wrote an expression the calculator refused, then repeated the same call;
    # asked once more without tools, it only echoed the error until max_tokens"
    assert "wrote an expression the calculator refused, then repeated the same " \
           "call" in text
    kinds = [s.kind for s in ns["run"].steps]
    assert kinds == ["call", "error", "repeat", "answer"], out
    assert ns["run"].stopped == "repeat" and ns["run"].cut
    assert "failed" in ns["run"].answer and out.startswith("step 1  model calls")
    # a refused delete ends with the tool's own sentence
    out = run_cells(ns, "c09-37")
    assert "the run ends with a sentence saying what was not done" in text
    assert out.splitlines()[-1] == "step 1  the run ends: Book 7 was not deleted."
    assert ns["run"].answer == "Book 7 was not deleted."


# ---- the capable model, through its own template ----------------------------------

def test_qwen_answers_the_austen_question(qwen_model_path):
    """Notebook 09's own cells: the answer ends in words and nothing in it is
    contradicted by the catalogue rows (before: Emma and Persuasion
    'available', Pride and Prejudice 'on loan', cut at max_tokens=120)."""
    qwen = load(str(qwen_model_path), n_threads=2, n_ctx=2048, quiet=True)
    assert template_speaks_tools(qwen.chat_template)
    ns = {"qwen": qwen, "check_answer": check_answer}
    out = run_cells(ns, "c09-05", "c09-18", "c09-21")
    run = ns["run"]
    first = run.calls()[0]
    assert first.name == "search_catalogue"
    assert "austen" in first.arguments.get("author", "").lower()
    assert FALLBACK_NOTICE not in run.steps[0].raw
    assert run.stopped in ("answer", "repeat") and not run.cut, out
    check = check_answer(run)
    assert check.ok, f"{run.answer}\n{check}"
    said = {c.title: c.said for c in check.claims}
    assert said.get("Emma") == said.get("Persuasion") == "on loan", str(check)
