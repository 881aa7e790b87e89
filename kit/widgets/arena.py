"""The arena widget: one prompt, answers side by side, blind vote, tally.

>>> from kit.widgets import ArenaWidget
>>> ArenaWidget(blind=True)        # two columns; three with n=3

The rules (shuffling, hiding names, counting votes) are in kit.arena; this
module only wires widgets to them. Answers stream one column after the
other in a background thread (on one CPU, side-by-side generation would
only halve both speeds), so the Stop button keeps working.
"""
from __future__ import annotations

import html
import threading
import time

import ipywidgets as W

from kit.arena import LETTERS, Contestant, Round, Tally, default_contestants
from kit.errors import KitError
from kit.widgets.chat import UPDATE_EVERY_S, markdown_html
from kit.engines import load
from kit.models.registry import installed
from kit.settings import get_settings


class ArenaWidget(W.VBox):
    """Ask several contestants the same prompt; vote for the best answer."""

    def __init__(self, contestants: list[Contestant] | None = None, n: int = 2,
                 blind: bool = False, max_tokens: int = 128, **kw):
        names = list(installed())
        # By default the default model against itself at two temperatures: a
        # copy or variant another notebook left installed never changes that.
        default = get_settings().default_model
        contestants = contestants or default_contestants(
            [default if default in names or not names else names[0]], n)
        names = sorted(set(names) | {c.model for c in contestants})
        self.tally, self.round, self.stream = Tally(), None, None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.pickers = [W.Dropdown(options=names, value=c.model, description=f"{L}: model")
                        for L, c in zip(LETTERS, contestants)]
        self.temps = [W.BoundedFloatText(value=c.temperature, min=0, max=5, step=0.1,
                                         description="temperature")
                      for c in contestants]
        self.seeds = [c.seed for c in contestants]
        # Enter adds a newline, which reaches the kernel with the text (see
        # kit.widgets.chat: a separate "submit" message can overtake keys).
        self.prompt = W.Textarea(placeholder="One prompt for every contestant; "
                                 "Enter asks", rows=1, continuous_update=True,
                                 layout=W.Layout(flex="1"))
        self.prompt.observe(self._on_prompt_change, "value")
        self.ask_button = W.Button(description="Ask all", button_style="primary")
        self.stop_button = W.Button(description="Stop", button_style="danger",
                                    disabled=True)
        self.blind = W.Checkbox(value=blind, description="Blind (hide names until I vote)",
                                indent=False)
        self.max_tokens = W.IntSlider(value=max_tokens, min=16, max=512, step=16,
                                      description="Max tokens")
        k = len(contestants)
        width = f"{96 // k}%"
        self.headers = [W.HTML(f"<b>Model {LETTERS[i]}</b>") for i in range(k)]
        self.answers = [W.HTML() for _ in range(k)]
        self.speeds = [W.HTML() for _ in range(k)]
        self.votes = [W.Button(description=f"{LETTERS[i]} is better", disabled=True)
                      for i in range(k)]
        self.tie_button = W.Button(description="Tie", disabled=True)
        self.result = W.HTML()
        self.table = W.HTML(self._table_html())
        for i, b in enumerate(self.votes):
            b.on_click(lambda _b, i=i: self.vote(i))
            b.add_class("kit-arena-vote")
        self.tie_button.on_click(lambda _b: self.vote(None))
        self.ask_button.on_click(lambda _b: self.ask())
        self.stop_button.on_click(lambda _b: self.stop())
        for w, name in [(self.prompt, "prompt"), (self.ask_button, "ask"),
                        (self.stop_button, "stop"), (self.result, "result"),
                        (self.table, "tally")]:
            w.add_class(f"kit-arena-{name}")
        columns = []
        for i in range(k):
            self.answers[i].add_class("kit-arena-answer")
            self.headers[i].add_class("kit-arena-header")
            self.speeds[i].add_class("kit-arena-speed")
            columns.append(W.VBox([self.headers[i], self.answers[i], self.speeds[i],
                                   self.votes[i]],
                                  layout=W.Layout(width=width, border="1px solid #ddd",
                                                  padding="4px", margin="2px")))
        setup = W.VBox([W.HBox([p, t]) for p, t in zip(self.pickers, self.temps)])
        self.setup = W.Accordion([setup], titles=("Contestants",),
                                 selected_index=None if blind else 0)
        super().__init__([self.setup, W.HBox([self.blind, self.max_tokens]),
                          W.HBox([self.prompt, self.ask_button, self.stop_button]),
                          W.HBox(columns), W.HBox([self.tie_button, self.result]),
                          self.table], **kw)
        self.add_class("kit-arena")

    # -- actions ------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def contestants(self) -> list[Contestant]:
        return [Contestant(p.value, float(t.value), s)
                for p, t, s in zip(self.pickers, self.temps, self.seeds)]

    def ask(self, text: str | None = None) -> bool:
        """Start a round with the typed prompt; False if busy, empty or invalid."""
        text = (self.prompt.value if text is None else text).strip()
        if not text or self.busy:
            return False
        try:
            self.round = Round(self.contestants(), blind=self.blind.value)
        except KitError as exc:
            self.result.value = html.escape(str(exc))
            return False
        for i in range(len(self.answers)):
            self.headers[i].value = f"<b>{html.escape(self.round.header(i))}</b>"
            self.answers[i].value, self.speeds[i].value = "", "waiting..."
            self.votes[i].disabled = True
        self.tie_button.disabled, self.result.value = True, ""
        self.ask_button.disabled, self.stop_button.disabled = True, False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, args=(text,), daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        """Stop the answer being written and skip the columns still waiting."""
        self._stopped = True
        if self.stream is not None:
            self.stream.cancel()

    def wait(self, timeout: float = 120) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def vote(self, slot: int | None) -> None:
        if self.round is None or self.busy:
            return
        try:
            self.result.value = html.escape(self.round.vote(slot, self.tally))
        except KitError as exc:
            self.result.value = html.escape(str(exc))
            return
        for i in range(len(self.headers)):
            self.headers[i].value = f"<b>{html.escape(self.round.header(i))}</b>"
            self.votes[i].disabled = True
        self.tie_button.disabled = True
        self.table.value = self._table_html()

    # -- inside -------------------------------------------------------------
    def _on_prompt_change(self, change) -> None:
        if "\n" in change["new"]:  # Enter: ask, and keep the prompt for the next round
            text = " ".join(change["new"].split("\n")).strip()
            self.prompt.value = text
            self.ask(text)

    def _table_html(self) -> str:
        t = self.tally
        rows = "".join(f"<tr><td>{html.escape(lab)}</td><td>{w}</td><td>{s:.0%}</td></tr>"
                       for lab, w, s in t.rows())
        return ("<table class='kit-tally'><tr><th align=left>contestant</th><th>wins"
                f"</th><th>share</th></tr>{rows}<tr><td>ties</td><td>{t.ties}</td>"
                f"<td></td></tr></table><small>{t.rounds} round(s) so far</small>")

    def _run(self, text: str) -> None:
        try:
            for i, c in enumerate(self.round.slots):
                if self._stopped:
                    self.speeds[i].value = "skipped (stopped)"
                    continue
                self.speeds[i].value = "loading..."
                model = load(c.model, quiet=True)
                messages = [{"role": "user", "content": text}]
                self.stream = model.chat(messages, **c.sampling(self.max_tokens.value))
                parts, last = [], 0.0
                for piece in self.stream:
                    parts.append(piece)
                    if time.monotonic() - last >= UPDATE_EVERY_S:
                        self.answers[i].value = markdown_html("".join(parts))
                        self.speeds[i].value = (f"writing... {self.stream.stats.generated_tokens}"
                                                " tokens")
                        last = time.monotonic()
                self.answers[i].value = markdown_html("".join(parts))
                st = self.stream.stats
                self.speeds[i].value = (f"{st.gen_tps:.1f} tok/s · {st.generated_tokens} "
                                        f"tokens · first token after {st.ttft_s:.2f} s")
            for b in [*self.votes, self.tie_button]:
                b.disabled = False
        except KitError as exc:
            self.result.value = html.escape(str(exc))
        except Exception as exc:  # never let the thread die silently
            self.result.value = html.escape(f"{type(exc).__name__}: {exc}")
        finally:
            self.stream = None
            self.ask_button.disabled, self.stop_button.disabled = False, True
