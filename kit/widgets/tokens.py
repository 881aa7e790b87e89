"""The token explorer: watch and steer the model one token at a time
(notebooks 01 and 06; `kit dashboard tokens`).

>>> from kit.widgets import TokenExplorer
>>> TokenExplorer("What is the capital of France?")   # bars, sliders, buttons

A thin shell over kit.explore.Explorer (`.explorer`), where the state lives:
notebooks and tests read that, not the widgets.
"""
from __future__ import annotations

import html

import ipywidgets as W

from kit.explore import Explorer

CSS = """<style>
.kit-tokens-row { align-items: center; }
.kit-tokens-pick button, button.kit-tokens-pick { font-family: monospace; }
.kit-tokens-bar { width: 100%; }
.kit-bar-track { position: relative; height: 22px; background: #f1f1f1; border-radius: 3px; }
.kit-bar-model { position: absolute; height: 100%; background: #d6d6d6; border-radius: 3px; }
.kit-bar-final { position: absolute; height: 60%; top: 20%; background: #3b7dd8;
                 border-radius: 3px; }
.kit-bar-label { position: absolute; left: 6px; top: 2px; font-size: 12px;
                  background: rgba(255,255,255,.75); padding: 0 4px; border-radius: 2px; }
.kit-tokens-removed .kit-bar-label { color: #888; }
.kit-tokens-text { font-family: monospace; line-height: 1.9; }
.kit-tokens-text .kit-prompt { color: #666; }
</style>"""


def bar_html(row, drawn: bool = False) -> str:
    """One candidate's bar: grey = the model's probability, blue = after the
    sampler's settings; removed tokens say which setting removed them."""
    model_w, final_w = f"{100 * row.model_p:.1f}%", f"{100 * row.final_p:.1f}%"
    label = f"{row.model_p:.1%}"
    label += f" → removed by {row.removed_by}" if row.removed_by else \
        f" → {row.final_p:.1%} with these settings"
    if drawn:
        label += " ← the model drew this"
    cls = "kit-bar-track" + (" kit-tokens-removed" if row.removed_by else "")
    return (f'<div class="{cls}"><div class="kit-bar-model" style="width:{model_w}"></div>'
            f'<div class="kit-bar-final" style="width:{final_w}"></div>'
            f'<span class="kit-bar-label">{html.escape(label)}</span></div>')


def shown(text: str) -> str:
    """A token's text on a button: spaces and line breaks made visible."""
    return text.replace(" ", "␣").replace("\n", "↵") or "∅"


class TokenExplorer(W.VBox):
    """Prompt, the next-token bars, sampler sliders, pick / let the model choose / undo."""

    def __init__(self, prompt: str = "What is the capital of France?",
                 model: str | None = None, chat: bool = True, k: int = 10,
                 seed: int | None = None, **settings):
        from kit.models.registry import installed

        self.model = _load(model) if model is None or isinstance(model, str) else model
        self.explorer = Explorer(self.model, prompt, chat=chat, k=k, seed=seed, **settings)
        s = self.explorer.settings
        names = list(installed())
        if self.model.name not in names:
            names.insert(0, self.model.name)
        self.model_pick = W.Dropdown(options=names, value=self.model.name,
                                     description="Model", layout=W.Layout(width="50%"))
        self.model_pick.add_class("kit-tokens-model")
        self.model_pick.observe(lambda change: self.switch(change["new"]), "value")
        self.prompt = W.Textarea(value=prompt, layout=W.Layout(width="100%", height="60px"))
        self.prompt.add_class("kit-tokens-prompt")
        self.chat = W.Checkbox(value=chat, description="in the chat template")
        self.restart = W.Button(description="Start again", icon="refresh")
        self.restart.add_class("kit-tokens-start")
        slider = dict(continuous_update=True, layout=W.Layout(width="48%"),
                      style={"description_width": "90px"})
        self.sliders = {
            "temperature": W.FloatSlider(value=s.temperature, min=0, max=2, step=0.05,
                                         description="temperature", **slider),
            "top_k": W.IntSlider(value=s.top_k, min=0, max=100, description="top_k",
                                 **slider),
            "top_p": W.FloatSlider(value=s.top_p, min=0.05, max=1, step=0.01,
                                   description="top_p", **slider),
            "min_p": W.FloatSlider(value=s.min_p, min=0, max=0.5, step=0.01,
                                   description="min_p", **slider)}
        self.picks, self.bars, rows = [], [], []
        for i in range(k):
            pick = W.Button(layout=W.Layout(width="150px"), tooltip="append this token")
            pick.add_class("kit-tokens-pick")
            pick.on_click(lambda _b, i=i: self.pick(i))
            bar = W.HTML(layout=W.Layout(width="100%"))
            bar.add_class("kit-tokens-bar")
            row = W.HBox([pick, bar], layout=W.Layout(width="100%"))
            row.add_class("kit-tokens-row")
            self.picks.append(pick), self.bars.append(bar), rows.append(row)
        self.choose = W.Button(description="Let the model choose", button_style="primary")
        self.choose.add_class("kit-tokens-choose")
        self.undo_button = W.Button(description="Undo", icon="undo")
        self.undo_button.add_class("kit-tokens-undo")
        self.status = W.HTML()
        self.status.add_class("kit-tokens-status")
        self.text = W.HTML()
        self.text.add_class("kit-tokens-text")
        self.restart.on_click(lambda _b: self.start())
        self.choose.on_click(lambda _b: self.let_model_choose())
        self.undo_button.on_click(lambda _b: self.undo())
        for name, w in self.sliders.items():
            w.observe(lambda change, name=name: self.setting(name, change["new"]), "value")
        super().__init__([W.HTML(CSS), self.model_pick, self.prompt,
                          W.HBox([self.chat, self.restart]),
                          W.HBox(list(self.sliders.values())[:2]),
                          W.HBox(list(self.sliders.values())[2:]),
                          self.text, *rows, W.HBox([self.choose, self.undo_button]),
                          self.status])
        self.add_class("kit-tokens")
        self.redraw()

    # -- actions (also callable from code) --------------------------------
    def start(self) -> None:
        self.explorer.start(self.prompt.value, self.chat.value)
        self.redraw("Started again.")

    def switch(self, name: str) -> None:
        """Another installed model: the same prompt and settings, from the start."""
        from kit.errors import KitError

        self.status.value = f"Loading {html.escape(name)}..."
        try:
            model = _load(name)
            explorer = Explorer(model, self.prompt.value, chat=self.chat.value,
                                k=self.explorer.k, **{n: getattr(self.explorer.settings, n)
                                                      for n in self.sliders})
        except KitError as exc:  # an embedding model, an engine without probabilities
            self.status.value = html.escape(str(exc))
            return
        self.model, self.explorer = model, explorer
        self.redraw(f"Loaded {name}: {model.describe()}.")

    def pick(self, i: int) -> None:
        row = self._rows[i]
        self.explorer.choose(row.id)
        self.redraw(f"You picked {row.text!r} (the model gave it {row.model_p:.1%}).")

    def let_model_choose(self) -> None:
        step = self.explorer.draw()
        end = " That token ends the answer: a chat would stop here." \
            if self.model.is_end_token(step.id) else ""
        self.redraw(f"The model drew {step.text!r}: it had a "
                    f"{step.prob:.1%} chance before the settings.{end}", drawn=step)

    def undo(self) -> None:
        self.explorer.undo()
        self.redraw("Took the last token back.")

    def setting(self, name: str, value) -> None:
        self.explorer.set(**{name: value})
        self.redraw(f"{self.explorer.kept()} token(s) can be drawn now.")

    # -- drawing ----------------------------------------------------------
    def redraw(self, message: str = "", drawn=None) -> None:
        """Bars for the next step, the status line, then the text so far."""
        ex = self.explorer
        self._rows = ex.rows()
        for pick, bar, row in zip(self.picks, self.bars, self._rows):
            pick.description = shown(row.text)
            bar.value = bar_html(row)
        prompt = html.escape(ex.prompt if not ex.chat else f"{ex.prompt} ⏎ ")
        # the text last: when it changes in the browser, the bars have too
        self.status.value = html.escape(message)
        self.text.value = (f'<span class="kit-prompt">{prompt}</span>'
                           f'{ex.text_html()}')


def _load(name):
    from kit.engines import load

    return load(name, quiet=True)
