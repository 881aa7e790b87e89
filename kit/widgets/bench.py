"""Benchmark plots: speed (and quality) from saved results, or measured now.

>>> from kit.widgets import BenchPanel
>>> BenchPanel()       # reads KIT_HOME/results/*.json|csv, else measures

Save results there with `kit bench MODEL --json > $KIT_HOME/results/x.json`
(speed) and `kit eval MODEL --json > ...` (quality). `find_results` and the
figure functions are plain functions, tested without widgets.
"""
from __future__ import annotations

import html
import io
import json
import threading
from pathlib import Path

import ipywidgets as W

from kit.bench import load_results, run_bench
from kit.models.registry import installed
from kit.settings import get_settings


def results_folder() -> Path:
    return get_settings().home / "results"


def _read_table(path: Path):
    """A results file as a DataFrame (kit.bench's format first, else plain rows)."""
    import pandas as pd

    try:
        df = load_results(path)
        if df["tps_mean"].notna().any():
            return df
    except Exception:  # not a bench file (or no kit.bench): try plain rows
        pass
    if path.suffix == ".csv":
        return pd.read_csv(path)
    data = json.loads(path.read_text())
    rows = data.get("rows", data.get("results", data)) if isinstance(data, dict) else data
    return pd.DataFrame(rows)


def find_results(folder=None) -> dict:
    """{'speed': DataFrame|None, 'quality': DataFrame|None, 'files': [...]}."""
    import pandas as pd

    folder = Path(folder or results_folder())
    speed, quality, files = [], [], []
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.csv")):
        try:
            df = _read_table(path)
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # not a results file: ignore it rather than fail
        if "tps_mean" in df.columns and "test" in df.columns:
            speed.append(df)
        elif "perplexity" in df.columns:
            # `kit eval --json` rows say name and size_mb
            if "model" not in df.columns and "name" in df.columns:
                df = df.rename(columns={"name": "model"})
            if "file_bytes" not in df.columns and "size_mb" in df.columns:
                df = df.assign(file_bytes=df["size_mb"] * 1e6)
            if "model" not in df.columns:
                continue
            quality.append(df)
        else:
            continue
        files.append(path.name)
    return {"speed": pd.concat(speed, ignore_index=True) if speed else None,
            "quality": pd.concat(quality, ignore_index=True) if quality else None,
            "files": files}


# The table's columns in words (the DataFrame keeps llama-bench's short names).
COLUMN_TITLES = {"model": "model", "quantization": "quantization",
                 "threads": "threads", "test": "test (pp: read, tg: write)",
                 "n_tokens": "tokens", "tps_mean": "tokens per second",
                 "tps_std": "spread (±, tokens/s)",
                 "ttft_s": "first token after (s)"}


def speed_table(df):
    """The speed results for people: worded columns, rounded, no spread from one run."""
    cols = [c for c in COLUMN_TITLES if c in df.columns]
    out = df[cols].copy()
    if "tps_std" in out and "reps" in df.columns:  # one run has no spread to show
        out["tps_std"] = out["tps_std"].where(df["reps"] > 1)
    out = out.round({"tps_mean": 1, "tps_std": 1, "ttft_s": 2})
    # object columns first: a dash is text, and a float column cannot hold it
    return out.rename(columns=COLUMN_TITLES).astype(object).fillna("-")


def measure_now(models=None):
    """A tiny speed measurement of installed models (pp 64, tg 32 tokens).

    Copies made for another engine (e.g. smollm2:135m-ct for ctransformers)
    are left out: this measures llama.cpp.
    """
    known = installed()
    models = models or [n for n, e in known.items()
                        if e.get("engine", "llamacpp") == "llamacpp"][:3] or [None]
    return run_bench(models, n_prompt=64, n_gen=32, reps=1,
                     measure_bandwidth=False, quiet=True)


def _png(fig) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90)
    return out.getvalue()


def speed_png(df) -> bytes:
    """Bars: tokens per second for prompt reading (pp) and writing (tg)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 0.6 + 0.5 * len(df)))
    ax = fig.add_subplot()
    labels = [f"{r.model} · {r.threads} thr · {r.test}" for r in df.itertuples()]
    ax.barh(labels, df["tps_mean"], xerr=df["tps_std"].fillna(0),
            color=["#4c72b0" if str(t).startswith("pp") else "#dd8452"
                   for t in df["test"]])
    ax.set_xlabel("tokens per second (pp = reading the prompt, tg = writing)")
    ax.invert_yaxis()
    fig.tight_layout()
    return _png(fig)


def quality_png(df) -> bytes:
    """Dots: file size against perplexity (lower is better)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    size = df["file_bytes"] / 1e6 if "file_bytes" in df.columns else range(len(df))
    ax.scatter(size, df["perplexity"])
    for x, y, name in zip(size, df["perplexity"], df["model"]):
        ax.annotate(str(name), (x, y), fontsize=8)
    ax.set_xlabel("file size (MB)" if "file_bytes" in df.columns else "model")
    ax.set_ylabel("perplexity (lower is better)")
    fig.tight_layout()
    return _png(fig)


class BenchPanel(W.VBox):
    """What is shown and where it came from, the plots, and a Measure button."""

    def __init__(self, folder=None, measure_if_empty: bool = True, **kw):
        self.folder = Path(folder or results_folder())
        self.about = W.HTML()
        self.about.add_class("kit-bench-about")
        hidden = W.Layout(display="none")  # no broken-image icon before a plot
        self.speed = W.Image(format="png", layout=hidden)
        self.quality = W.HTML()
        self.quality_plot = W.Image(format="png", layout=W.Layout(display="none"))
        self.table = W.HTML()
        self.measure_button = W.Button(description="Measure now")
        self.measure_button.on_click(lambda _b: self.measure())
        self._thread = None
        super().__init__([self.about, self.measure_button, self.speed, self.table,
                          self.quality, self.quality_plot], **kw)
        self.add_class("kit-bench")
        found = find_results(self.folder)
        self.show(found["speed"], f"Speed from {', '.join(found['files'])} in "
                  f"{self.folder}" if found["speed"] is not None else "")
        self.show_quality(found["quality"])
        if found["speed"] is None and measure_if_empty:
            self.measure()

    def show(self, df, source: str) -> None:
        if df is None:
            self.about.value = (f"No speed results in {html.escape(str(self.folder))} "
                                "yet.")
            return
        self.about.value = html.escape(source)
        self.speed.value = speed_png(df)
        self.speed.layout.display = ""
        self.table.value = speed_table(df).to_html(index=False)

    def show_quality(self, df) -> None:
        if df is None:
            self.quality.value = ("<b>Quality</b>: no evaluation results yet. Run "
                                  "<code>kit eval MODEL ... --json</code> and save "
                                  f"the output in {html.escape(str(self.folder))}.")
            return
        self.quality.value = "<b>Quality</b>: perplexity from the saved evaluation."
        self.quality_plot.value = quality_png(df)
        self.quality_plot.layout.display = ""

    def measure(self) -> None:
        """Measure installed models now, in the background."""
        if self._thread is not None and self._thread.is_alive():
            return
        self.about.value = ("Measuring now (a tiny test: read 64 tokens, write 32)... "
                            "the plot appears in a few seconds.")
        self.measure_button.disabled = True

        def work():
            try:
                self.show(measure_now(), "Measured just now on this computer: a "
                          "tiny test (read 64 tokens, write 32, once each). Save "
                          "`kit bench` results for steadier figures.")
            except Exception as exc:  # shown, never a silent dead thread
                self.about.value = html.escape(f"Could not measure: {exc}")
            finally:
                self.measure_button.disabled = False

        self._thread = threading.Thread(target=work, daemon=True)
        self._thread.start()

    def wait(self, timeout: float = 120) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
