"""Self-check quizzes: a few multiple-choice questions at the end of a notebook.

The questions live in kit/data/quizzes/NN.json, one file per notebook.

>>> quiz = load_quiz("01")
>>> check_answer(quiz.questions[0], 0).correct   # by position, or by text
False
>>> show_quiz("01")        # in a notebook: choices, a Check button, feedback
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kit.errors import BadParameter, BadQuiz, QuizNotFound


@dataclass(frozen=True)
class Question:
    id: str
    prompt: str
    choices: tuple[str, ...]
    answer: int  # position of the right choice
    why: tuple[str, ...]  # for each choice: why it is right or wrong


@dataclass(frozen=True)
class Quiz:
    id: str
    title: str
    notebook: str
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Feedback:
    correct: bool | None  # None: no choice made yet
    text: str

    def html(self) -> str:
        if self.correct is None:
            return f"<i>{_inline(self.text)}</i>"
        colour, word = ("#1a7f37", "Right.") if self.correct else ("#b35900", "Not quite.")
        return f"<b style='color:{colour}'>{word}</b> {_inline(self.text)}"


def _folder() -> Path:
    return Path(str(resources.files("kit") / "data" / "quizzes"))


def quiz_ids() -> list[str]:
    """The quizzes that ship with the kit, e.g. ['00', '01', ...]."""
    return sorted(p.stem for p in _folder().glob("*.json"))


def _question(raw, source, n: int) -> Question:
    where = f"question {n + 1}"
    if not isinstance(raw, dict) or not str(raw.get("prompt", "")).strip():
        raise BadQuiz(source, f"{where} has no prompt")
    choices = raw.get("choices")
    if not isinstance(choices, list) or not 2 <= len(choices) <= 6:
        raise BadQuiz(source, f"{where} needs 2 to 6 choices")
    texts, whys, right = [], [], []
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict) or not choice.get("text") or not choice.get("why"):
            raise BadQuiz(source, f"{where}, choice {i + 1} needs a text and a why")
        texts.append(str(choice["text"]))
        whys.append(str(choice["why"]))
        if choice.get("correct") is True:
            right.append(i)
    if len(right) != 1:
        raise BadQuiz(source, f"{where} has {len(right)} correct choices, not one")
    if len(set(texts)) != len(texts):
        raise BadQuiz(source, f"{where} has two choices with the same text")
    return Question(str(raw.get("id") or n + 1), str(raw["prompt"]), tuple(texts),
                    right[0], tuple(whys))


def load_quiz(quiz_id) -> Quiz:
    """The quiz for a notebook: "01", 1, or the path of a quiz .json file."""
    if isinstance(quiz_id, int):
        quiz_id = f"{quiz_id:02d}"
    path = Path(quiz_id)
    if path.suffix != ".json":
        path = _folder() / f"{quiz_id}.json"
        if not path.is_file():
            raise QuizNotFound(str(quiz_id), quiz_ids())
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuizNotFound(str(quiz_id), quiz_ids()) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadQuiz(path, f"it is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("questions"), list) \
            or not raw["questions"]:
        raise BadQuiz(path, "it has no list of questions")
    questions = tuple(_question(q, path, n) for n, q in enumerate(raw["questions"]))
    return Quiz(str(raw.get("id", path.stem)), str(raw.get("title", "")),
                str(raw.get("notebook", "")), questions)


def check_answer(question: Question, choice) -> Feedback:
    """Is this choice right, and why? `choice` is a position (0, 1, ...) or a text."""
    if choice is None:
        return Feedback(None, "Choose an answer first.")
    if isinstance(choice, str) and choice in question.choices:
        choice = question.choices.index(choice)
    if isinstance(choice, bool) or not isinstance(choice, int) \
            or not 0 <= choice < len(question.choices):
        raise BadParameter("choice", choice,
                           f"a position from 0 to {len(question.choices) - 1}, "
                           "or the text of one of the choices")
    return Feedback(choice == question.answer, question.why[choice])


def _inline(text: str) -> str:
    """Escape HTML, then show `code` as code (the quiz files use backticks)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _plain(text: str) -> str:
    """Choices are plain-text radio labels: drop the backticks around code."""
    return re.sub(r"`([^`]+)`", r"\1", text)


def _question_box(n: int, question: Question, on_answer):
    import ipywidgets as w

    pick = w.RadioButtons(options=[(_plain(c), i) for i, c in enumerate(question.choices)],
                          value=None, layout=w.Layout(width="auto"))
    button = w.Button(description="Check", button_style="info")
    result = w.HTML()

    def check(_):
        feedback = check_answer(question, pick.value)
        result.value = feedback.html()
        on_answer(n, feedback)

    button.on_click(check)
    prompt = w.HTML(f"<b>{n + 1}. {_inline(question.prompt)}</b>")
    box = w.VBox([prompt, pick, w.HBox([button, result])])
    box.pick, box.button, box.result = pick, button, result  # for tests
    return box


def show_quiz(quiz_id):
    """A self-check quiz as widgets: pick an answer, press Check, read why."""
    import ipywidgets as w

    quiz = load_quiz(quiz_id)
    score = w.HTML()
    right: dict[int, bool] = {}

    def on_answer(n, feedback):
        if feedback.correct is not None:
            right[n] = feedback.correct
        score.value = (f"<i>{sum(right.values())} of {len(quiz.questions)} "
                       "right so far (nothing is recorded or sent).</i>")

    boxes = [_question_box(n, q, on_answer) for n, q in enumerate(quiz.questions)]
    title = w.HTML(f"<h3>Check yourself: {_inline(quiz.title)}</h3>")
    panel = w.VBox([title, *boxes, score])
    panel.questions, panel.score = boxes, score  # for tests
    return panel
