"""Will it fit? Pick a catalog model, a context size and a computer.

>>> from kit.widgets import FitWidget
>>> FitWidget()                     # a verdict, the arithmetic and a bar

The arithmetic is kit.fit's (through kit.models.catalog.estimate); `verdict()` is
the plain function that turns it into sentences, tested without widgets.
"""
from __future__ import annotations

import io

import ipywidgets as W

from kit.fit import MB, available_memory
from kit.models import catalog

CONTEXTS = (512, 1024, 2048, 4096, 8192, 16384, 32768)
GB = 1_000_000_000
# Free memory of typical computers once a browser is open (rough figures).
COMPUTERS = {"an 8 GB laptop (about 5 GB free)": 5 * GB,
             "a 16 GB laptop (about 11 GB free)": 11 * GB,
             "a 32 GB desktop (about 26 GB free)": 26 * GB}


def verdict(est, trained_ctx: int | None = None) -> str:
    """Sentences saying whether it fits and why (from a kit.fit.FitEstimate)."""
    mb = lambda n: f"{n / MB:,.0f} MB"  # noqa: E731
    parts = (f"The weights take {mb(est.weights)}, the KV cache (the model's "
             f"notes about {est.n_ctx} tokens of context) {mb(est.kv_cache)}, and "
             f"the engine's working space {mb(est.overhead)}: {mb(est.total)} in all.")
    if est.ram_available is None:
        return parts
    gap = est.ram_available - est.ram_needed
    if est.fits:
        head = f"Fits, with {mb(gap)} to spare of {mb(est.ram_available)} free."
        if gap < 0.2 * est.ram_available:
            head += " That is tight: close other programs first."
    else:
        head = (f"Does not fit: {mb(-gap)} short of the {mb(est.ram_available)} "
                "free. Try a smaller model, a smaller quantization or a shorter "
                "context.")
    if trained_ctx and est.n_ctx > trained_ctx:
        head += (f" Note: the model was trained for {trained_ctx} tokens; a longer "
                 "context may give poor answers.")
    return f"{head} {parts}"


def bar_png(est, title: str) -> bytes:
    """A stacked bar (weights, KV cache, overhead) against the free memory."""
    from matplotlib.figure import Figure  # no pyplot: safe in any thread

    fig = Figure(figsize=(7, 1.8))
    ax = fig.add_subplot()
    left = 0.0
    for label, size in (("weights", est.weights), ("KV cache", est.kv_cache),
                        ("overhead", est.overhead)):
        ax.barh([0], [size / GB], left=left, label=label)
        left += size / GB
    if est.ram_available is not None:
        ax.axvline(est.ram_available / GB, color="red", linestyle="--",
                   label="free memory")
    ax.set_yticks([])
    ax.set_xlabel("GB")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.05), fontsize=8)
    fig.subplots_adjust(left=0.03, right=0.78, bottom=0.3, top=0.82)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90)
    return out.getvalue()


class FitWidget(W.VBox):
    """A catalog model, a context size, a computer: the verdict and the sum."""

    def __init__(self, model: str = "llama3.2:1b-q4_k_m", n_ctx: int = 2048, **kw):
        self.entries = {e["name"]: e for e in catalog.entries()}
        here = available_memory()[0]
        computers = {f"this computer ({here / GB:.1f} GB free now)": here, **COMPUTERS}
        self.model = W.Dropdown(
            options=[(f"{e['title']} · {e['quantization']} ({n})", n)
                     for n, e in self.entries.items()],
            value=model if model in self.entries else next(iter(self.entries)),
            description="Model", layout=W.Layout(width="70%"))
        self.n_ctx = W.SelectionSlider(options=CONTEXTS, value=n_ctx,
                                       description="Context")
        self.computer = W.Dropdown(options=list(computers.items()), value=here,
                                   description="Computer", layout=W.Layout(width="70%"))
        self.answer = W.HTML()
        self.answer.add_class("kit-fit-answer")
        self.picture = W.Image(format="png")
        for w in (self.model, self.n_ctx, self.computer):
            w.observe(lambda _change: self.update(), "value")
        super().__init__([self.model, self.n_ctx, self.computer, self.answer,
                          self.picture], **kw)
        self.add_class("kit-fit")
        self.update()

    def update(self) -> None:
        entry = self.entries[self.model.value]
        est = catalog.estimate(entry, self.n_ctx.value, self.computer.value)
        color = "#0a7d32" if est.fits else "#b00020"
        # The picture first: when the browser shows the new answer, it has it.
        self.picture.value = bar_png(est, f"{entry['title']}, context {self.n_ctx.value}")
        self.answer.value = (f"<div style='font-size:110%;color:{color}'>"
                             f"{verdict(est, entry.get('context_length'))}</div>")
