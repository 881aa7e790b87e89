"""Build the workshop's reveal.js slides: `make slides` (or `python slides/build.py`).

Sources: slides/src/*.md, one deck each (Markdown; `---` between slides,
`Note:` starts the speaker notes, `{{ name }}` is a figure from figures.py).
Output: slides/build/*.html plus reveal.js/ beside them, all paths relative,
nothing from the internet when presenting. reveal.js itself comes from the
npm registry at build time (checked against a pinned sha512) and is kept in
slides/.cache/ so later builds need no network.

    python slides/build.py                  # measure on this machine, build
    python slides/build.py --no-measure     # skip the model run (figures say so)
    python slides/build.py --reveal-tgz reveal.js-5.2.1.tgz   # no npm needed
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = HERE / "src"
REVEAL_VERSION = "5.2.1"
REVEAL_INTEGRITY = ("sha512-r7//6mIM5p34hFiDMvYfXgyjXqGRta+/psd9YtytsgRlrpRzFv4RbH76TXd2"
                    "qD+7ZPZEbpBDhdRhJaFgfQ7zNQ==")
# What the decks use from the package; nothing else is copied.
REVEAL_FILES = ["LICENSE", "dist/reset.css", "dist/reveal.css", "dist/reveal.js",
                "dist/theme/white.css", "plugin/markdown/markdown.js",
                "plugin/highlight/highlight.js", "plugin/highlight/monokai.css",
                "plugin/notes/notes.js"]
REVEAL_DIRS = ["dist/theme/fonts/source-sans-pro/"]
PLACEHOLDER = re.compile(r"\{\{\s*([a-z0-9_.]+)\s*\}\}")


class SlidesError(Exception):
    """A build that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class Deck:
    stem: str
    title: str
    notebooks: tuple[str, ...]
    minutes: str
    body: str


# ---- reveal.js from the npm registry ----------------------------------------

def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch_reveal(cache: Path, tgz: Path | None = None) -> Path:
    """The reveal.js package tarball: given, cached, or fetched with `npm pack`."""
    if tgz is not None:
        if not tgz.is_file():
            raise SlidesError(f"{tgz} does not exist. Pass the reveal.js-{REVEAL_VERSION}"
                              ".tgz made by `npm pack reveal.js@" + REVEAL_VERSION + "`.")
        if _integrity(tgz) != REVEAL_INTEGRITY:
            raise SlidesError(f"{tgz} is not reveal.js {REVEAL_VERSION} as published "
                              "(its sha512 differs). Fetch it again with `npm pack "
                              f"reveal.js@{REVEAL_VERSION}`.")
        return tgz
    cached = cache / f"reveal.js-{REVEAL_VERSION}.tgz"
    if cached.is_file():
        if _integrity(cached) == REVEAL_INTEGRITY:
            return cached
        cached.unlink()  # damaged: fetch it again below
    npm = shutil.which("npm")
    if npm is None:
        raise SlidesError(
            "npm was not found, and reveal.js is not in " + str(cache) + ". Install "
            "Node.js (it includes npm: https://nodejs.org, or `sudo apt install npm`), "
            f"or copy reveal.js-{REVEAL_VERSION}.tgz from another machine (`npm pack "
            f"reveal.js@{REVEAL_VERSION}`) and pass --reveal-tgz FILE.")
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / "npm-pack.partial"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        done = subprocess.run([npm, "pack", f"reveal.js@{REVEAL_VERSION}", "--silent"],
                              cwd=work, capture_output=True, text=True, timeout=300)
        got = sorted(work.glob("reveal.js-*.tgz"))
        if done.returncode != 0 or not got:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise SlidesError(f"`npm pack reveal.js@{REVEAL_VERSION}` failed: "
                              f"{' '.join(tail) or 'no file'}. Check the network or the "
                              "npm registry setting (`npm config get registry`), or pass "
                              "--reveal-tgz FILE.")
        if _integrity(got[0]) != REVEAL_INTEGRITY:
            raise SlidesError("npm gave a reveal.js package whose sha512 differs from "
                              "the published one; nothing was kept. Check the npm "
                              "registry setting, then try again.")
        os.replace(got[0], cached)  # only a verified tarball gets the cache name
    except subprocess.TimeoutExpired as exc:
        raise SlidesError("`npm pack` took more than 5 minutes; check the network, or "
                          "pass --reveal-tgz FILE.") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return cached


def copy_reveal(tgz: Path, dest: Path) -> None:
    """Copy the listed files out of the tarball (never any other path)."""
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/")
            wanted = name in REVEAL_FILES or any(
                name.startswith(d) and "/" not in name[len(d):] for d in REVEAL_DIRS)
            if not wanted or not member.isfile():
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    missing = [f for f in REVEAL_FILES if not (dest / f).is_file()]
    if missing:
        raise SlidesError(f"{tgz} lacks {', '.join(missing)}: not the expected reveal.js.")


# ---- decks ----------------------------------------------------------------------

def read_deck(path: Path) -> Deck:
    text = path.read_text(encoding="utf-8")
    meta = {}
    if text.startswith("---\n"):
        head, _, text = text[4:].partition("\n---\n")
        for line in head.splitlines():
            key, _, value = line.partition(":")
            meta[key.strip()] = value.strip()
    if not meta.get("title"):
        raise SlidesError(f"{path} needs a front matter with a title: line "
                          "(between two --- lines at the top).")
    notebooks = tuple(n.strip() for n in meta.get("notebooks", "").split(",") if n.strip())
    return Deck(path.stem, meta["title"], notebooks, meta.get("minutes", ""),
                text.strip() + "\n")


def fill(text: str, figures: dict, where: str) -> str:
    """Put the figures into a deck; an unknown name stops the build."""
    unknown = sorted({m for m in PLACEHOLDER.findall(text) if m not in figures})
    if unknown:
        raise SlidesError(f"{where} uses figure(s) {', '.join(unknown)} that "
                          f"slides/figures.py does not make. Known: {', '.join(sorted(figures))}.")
    return PLACEHOLDER.sub(lambda m: figures[m.group(1)], text)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title}</title>
<link rel="stylesheet" href="reveal.js/dist/reset.css">
<link rel="stylesheet" href="reveal.js/dist/reveal.css">
<link rel="stylesheet" href="reveal.js/dist/theme/white.css">
<link rel="stylesheet" href="reveal.js/plugin/highlight/monokai.css">
<link rel="stylesheet" href="kit-slides.css">
</head>
<body>
<div class="reveal"><div class="slides">
<section data-markdown data-separator="^---$" data-separator-notes="^Note:">
<textarea data-template>
{markdown}</textarea>
</section>
</div></div>
<a class="kit-home" href="index.html">all decks</a>
<script src="reveal.js/dist/reveal.js"></script>
<script src="reveal.js/plugin/markdown/markdown.js"></script>
<script src="reveal.js/plugin/highlight/highlight.js"></script>
<script src="reveal.js/plugin/notes/notes.js"></script>
<script>
Reveal.initialize({{hash: true, slideNumber: "c/t", center: false,
  plugins: [RevealMarkdown, RevealHighlight, RevealNotes]}});
</script>
</body>
</html>
"""

STYLE = """.reveal { font-size: 30px; }
.reveal h1 { font-size: 1.9em; } .reveal h2 { font-size: 1.4em; }
.reveal table { font-size: 0.7em; } .reveal pre { width: 100%; font-size: 0.6em; }
.reveal pre code { max-height: 520px; white-space: pre-wrap !important; }
.reveal section.dense p { font-size: 0.75em; }
.reveal section.dense pre { font-size: 0.44em; margin: 4px auto; }
.reveal section.dense pre code { max-height: 600px; }
.reveal .slides section { text-align: left; }
.kit-home { position: fixed; bottom: 10px; left: 14px; font: 14px sans-serif;
  color: #888; z-index: 30; }
body.kit-index { font: 18px/1.5 sans-serif; max-width: 52em; margin: 2em auto; padding: 0 1em; }
"""


def render_deck(deck: Deck, markdown: str) -> str:
    # inside <textarea> only "&" and "<" need escaping for the text to come back as is
    safe = markdown.replace("&", "&amp;").replace("<", "&lt;")
    return PAGE.format(title=html.escape(deck.title), markdown=safe)


def render_index(decks: list[Deck], figures: dict) -> str:
    rows = []
    for d in decks:
        nbs = ", ".join(f"<code>notebooks/{html.escape(n)}</code>" for n in d.notebooks)
        rows.append(f"<li><a href='{d.stem}.html'>{html.escape(d.title)}</a>"
                    + (f" ({html.escape(d.minutes)} min)" if d.minutes else "")
                    + (f" · {nbs}" if nbs else "") + "</li>")
    measured = figures.get("run.cpu", "not measured")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Workshop slides</title>
<link rel="stylesheet" href="kit-slides.css"></head>
<body class="kit-index">
<h1>Run language models on your own computer: slides</h1>
<ol>
{chr(10).join(rows)}
</ol>
<p>Keys while presenting: <b>F</b> full screen, <b>S</b> speaker notes (a second
window), <b>Esc</b> overview, <b>?</b> all keys. For a PDF, open a deck with
<code>?print-pdf</code> after its name and print to PDF.</p>
<p>Built {figures['build.date']} with kit {figures['build.kit_version']}. Speeds and
answers were measured while building, on this CPU: {html.escape(measured)}
({figures.get('run.threads', '?')} threads). Every file these pages use is in this
folder: copy the whole folder to present without internet.</p>
</body></html>
"""


# ---- the build ------------------------------------------------------------------

def build(out: Path, cache: Path, tgz: Path | None = None, measure: bool = True,
          max_tokens: int = 48, src: Path = SRC) -> list[Path]:
    """Write every deck, index.html and reveal.js into `out`, atomically."""
    import importlib.util

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the kit from this checkout
    spec = importlib.util.spec_from_file_location("slide_figures", HERE / "figures.py")
    figures_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures_module)

    decks = [read_deck(p) for p in sorted(src.glob("*.md"))]
    if not decks:
        raise SlidesError(f"No decks (*.md) in {src}.")
    for deck in decks:
        for nb in deck.notebooks:
            if not (ROOT / "notebooks" / nb).is_file():
                raise SlidesError(f"{deck.stem}.md names notebooks/{nb}, which does not "
                                  "exist. Fix the notebooks: line of its front matter.")
    package = fetch_reveal(cache, tgz)
    try:
        figures = figures_module.collect(measure=measure, max_tokens=max_tokens)
    except Exception as exc:  # the kit or the starter model is not ready
        raise SlidesError(f"Could not measure the figures ({type(exc).__name__}: {exc}). "
                          "Run `make setup` (or `kit setup`) first, or build with "
                          "--no-measure.") from exc
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    copy_reveal(package, partial / "reveal.js")
    (partial / "kit-slides.css").write_text(STYLE, encoding="utf-8")
    written = []
    for deck in decks:
        page = render_deck(deck, fill(deck.body, figures, f"{deck.stem}.md"))
        (partial / f"{deck.stem}.html").write_text(page, encoding="utf-8")
        written.append(out / f"{deck.stem}.html")
    (partial / "index.html").write_text(render_index(decks, figures), encoding="utf-8")
    (partial / "figures.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False),
                                          encoding="utf-8")
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(partial, out)  # a half-built folder never has the real name
    shutil.rmtree(old, ignore_errors=True)
    return [out / "index.html", *written]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE / "build", help="default slides/build")
    p.add_argument("--cache", type=Path, default=HERE / ".cache",
                   help="where the reveal.js package is kept (default slides/.cache)")
    p.add_argument("--reveal-tgz", type=Path, help="a reveal.js-%s.tgz to use" % REVEAL_VERSION)
    p.add_argument("--no-measure", action="store_true",
                   help="do not run the model (speed figures say 'not measured')")
    p.add_argument("--max-tokens", type=int, default=48,
                   help="length of the measured answer (default 48)")
    a = p.parse_args(argv)
    try:
        paths = build(a.out, a.cache, a.reveal_tgz, not a.no_measure, a.max_tokens)
    except SlidesError as exc:
        print(f"slides: {exc}", file=sys.stderr)
        return 1
    print(f"Built {len(paths) - 1} decks: open {paths[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
