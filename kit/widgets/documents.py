"""Ask your documents: choose a folder, index it, ask, read the answer and its sources.

>>> from kit.widgets.documents import DocumentsWidget
>>> DocumentsWidget()             # the kit's library documents, ready to index

The work is done by kit.documents (index_folder, answer); this module only
wires widgets to it. Indexing and answering run in a background thread so
the page stays responsive.
"""
from __future__ import annotations

import html
import threading

import ipywidgets as W

from kit.errors import KitError

_STYLE = """<style>
.kit-docs-sources li {margin-bottom: 6px}
.kit-docs-snippet {color: #555; font-size: 90%}
.kit-docs-note {background: #fff4ce; padding: 2px 6px; margin: 2px 0}
</style>"""


def chat_models() -> list[str]:
    """Installed models that can chat (embedding models left out), best first."""
    from kit.documents.ask import chat_model_name
    from kit.models.registry import installed

    names = [n for n, e in installed().items() if e.get("kind") != "embedding"]
    first = chat_model_name()
    return [first] + [n for n in names if n != first]


def sources_html(hits, cited=()) -> str:
    items = []
    for n, h in enumerate(hits, 1):
        snippet = " ".join(h.chunk.text.split())
        mark = "" if n in cited or not cited else " <i>(not cited)</i>"
        items.append(f"<li><b>[{n}] {html.escape(h.chunk.where())}</b> · score "
                     f"{h.score:.2f}{mark}<br><span class='kit-docs-snippet'>"
                     f"{html.escape(snippet[:300])}{'...' if len(snippet) > 300 else ''}"
                     "</span></li>")
    return f"<ol style='list-style:none;padding-left:0'>{''.join(items)}</ol>"


def notes_html(notes) -> str:
    return "".join(f"<div class='kit-docs-note'>{html.escape(n)}</div>" for n in notes)


class DocumentsWidget(W.VBox):
    """Index a folder, then ask questions; the Index object is `.index`."""

    def __init__(self, folder=None, model: str | None = None, k: int = 3,
                 max_tokens: int = 160, **kw):
        from kit.documents.measure import bundled_folder

        self.index = None
        self.result = None  # the last Answer
        self.status_log: list[str] = []  # every status line shown, in order
        self._thread: threading.Thread | None = None
        self.folder = W.Text(value=str(folder or bundled_folder()), description="Folder",
                             layout=W.Layout(width="70%"))
        self.index_button = W.Button(description="Index", button_style="primary")
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="50%"))
        self.report = W.HTML("Choose a folder of .txt, .md, .pdf, .html or .docx "
                             "files and press Index.")
        models = chat_models()
        self.model_pick = W.Dropdown(options=models, value=model or models[0],
                                     description="Model")
        self.method = W.ToggleButtons(options=[("By meaning", "embeddings"),
                                               ("Keywords (BM25)", "bm25")],
                                      value="embeddings")
        self.k = W.IntSlider(value=k, min=1, max=8, description="Sources")
        self.max_tokens = max_tokens
        self.question = W.Text(placeholder="Ask a question about these documents",
                               continuous_update=False, layout=W.Layout(width="70%"))
        self.ask_button = W.Button(description="Ask", disabled=True)
        self.status = W.HTML("")
        self.answer_box = W.HTML("")
        self.notes = W.HTML("")  # what to distrust in the answer
        self.sources = W.HTML("")
        self.prompt = W.Textarea(value="", layout=W.Layout(width="98%", height="220px"))
        prompt_box = W.Accordion(children=[self.prompt])
        prompt_box.set_title(0, "The prompt the model read")
        for widget, name in [(self.folder, "folder"), (self.index_button, "index"),
                             (self.progress, "progress"), (self.report, "report"),
                             (self.question, "question"), (self.ask_button, "ask"),
                             (self.status, "status"), (self.answer_box, "answer"),
                             (self.notes, "notes"),
                             (self.sources, "sources"), (self.prompt, "prompt"),
                             (self.model_pick, "model"),
                             (self.method, "method")]:
            widget.add_class(f"kit-docs-{name}")
        self.index_button.on_click(lambda _b: self.build())
        self.ask_button.on_click(lambda _b: self.ask())
        self.question.observe(lambda _c: self.ask(), "value")  # Enter (or leaving the box)
        super().__init__([W.HTML(_STYLE), W.HBox([self.folder, self.index_button]),
                          self.progress, self.report,
                          W.HBox([self.model_pick, self.k]), self.method,
                          W.HBox([self.question, self.ask_button]), self.status,
                          self.answer_box, self.notes, self.sources, prompt_box], **kw)
        self.add_class("kit-docs")

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float = 120) -> None:
        """Block until indexing or answering is done (for tests and scripts)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _start(self, target, *args) -> bool:
        if self.busy:
            return False
        self.index_button.disabled = self.ask_button.disabled = True
        self._thread = threading.Thread(target=target, args=args, daemon=True)
        self._thread.start()
        return True

    def _done(self) -> None:
        self.index_button.disabled = False
        self.ask_button.disabled = self.index is None

    # -- indexing -------------------------------------------------------------
    def build(self) -> bool:
        """Index the folder in the background; False if busy."""
        self.report.value = "Reading the folder..."
        return self._start(self._build, self.folder.value.strip())

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.max, self.progress.value = max(total, 1), done
        self.report.value = f"Embedding chunks: {done} of {total}"

    def _build(self, folder: str) -> None:
        from kit.documents.index import index_folder

        try:
            self.progress.value = 0
            self.index = index_folder(folder, progress=self._on_progress)
            rep = self.index.report
            self.progress.max = self.progress.value = max(rep.chunks, 1)
            skipped = "".join(f"<li>{html.escape(str(s))}</li>" for s in rep.skipped)
            notes = [] if not rep.truncated else [str(rep).splitlines()[-1].strip()]
            self.report.value = (f"{html.escape(rep.line())}."
                                 + (f" Skipped:<ul>{skipped}</ul>" if skipped else "")
                                 + notes_html(notes))
        except KitError as exc:  # the working index, if any, stays in use
            kept = ("" if self.index is None else " The index of "
                    f"{html.escape(str(self.index.folder))} is kept: questions still use it.")
            self.report.value = (f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
                                 + kept)
        finally:
            self._done()

    # -- asking -------------------------------------------------------------
    def ask(self, text: str | None = None) -> bool:
        """Answer a question (default: the one typed) in the background."""
        text = (self.question.value if text is None else text).strip()
        if not text or self.index is None:
            if self.index is None and text:
                self.status.value = "Index a folder first."
            return False
        return self._start(self._answer, text)

    def _show_status(self, line: str) -> None:
        self.status.value = html.escape(line)
        self.status_log.append(line)

    def _show_text(self, text: str) -> None:
        self.answer_box.value = f"<p>{html.escape(text)}</p>"

    def _answer(self, text: str) -> None:
        from kit.documents.ask import answer

        try:
            self.notes.value = self.sources.value = self.answer_box.value = ""
            self.result = answer(text, self.index, model=self.model_pick.value,
                                 k=self.k.value, method=self.method.value,
                                 max_tokens=self.max_tokens, on_text=self._show_text,
                                 on_status=self._show_status)
            r = self.result
            self._show_text(r.text.strip() or "(no answer)")
            cited = {n for c in r.claims for n in c.sources}
            self.sources.value = "<b>Sources</b>" + sources_html(r.hits, cited)
            self.prompt.value = r.prompt
            self.notes.value = notes_html(r.notices) or "Every sentence cites a source."
            self.status.value = (f"Answered by {html.escape(r.model)}: "
                                 f"{html.escape(r.stats.line()) if r.stats else ''}")
        except KitError as exc:
            self.status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
        finally:
            self._done()
