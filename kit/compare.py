"""Compare models, quantizations and engines on the same prompts, side by side.

A model is written NAME or NAME@ENGINE: `smollm2:135m` (llama.cpp),
`smollm2:135m-ct@ctransformers`, or `smollm2:135m@http://127.0.0.1:8080`
(a model on an OpenAI-compatible server). Every run uses the same settings
and seed, and records where its answer came from (file, sha256, engine and
version, settings, machine, timings).

>>> result = compare(["smollm2:135m", "smollm2:135m-ct@ctransformers"], "quick")
>>> result.table()            # rows: prompts, columns: models
>>> result.to_markdown("comparison.md"); result.to_json("comparison.json")
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict
from pathlib import Path

from kit.errors import BadPromptSet, KitError, ListedTwice, UnknownEngine
from kit.util import atomic_write_text, sha256_cached
from kit import __version__ as kit_version
from kit.engines import ALIASES, ENGINES, load
from kit.engines.base import Engine, Sampling
# The three engines notebook 05 sets side by side, reached through this stage:
# can ctransformers run a file, a converted copy for it, a local server.
from kit.engines.ct_convert import to_ctransformers
from kit.engines.ctransformers import can_run
from kit.engines.llama_server import LlamaServer
from kit.machine import machine_facts

__all__ = ["compare", "load_prompts", "parse_spec", "describe_model", "machine_summary",
           "Comparison", "can_run", "to_ctransformers", "LlamaServer", "DEFAULTS"]
DEFAULTS = dict(temperature=0.0, seed=42, max_tokens=128)


def parse_spec(spec: str, engine: str | None = None) -> tuple[str, str | None, str | None]:
    """'name@engine' -> (name, engine, base_url); a URL after @ means remote.

    >>> parse_spec("smollm2:135m@http://127.0.0.1:8080")
    ('smollm2:135m', 'remote', 'http://127.0.0.1:8080')
    """

    name, at, tail = spec.rpartition("@")
    if not at:
        return spec, engine, None
    if tail.startswith(("http://", "https://")):
        return name, "remote", tail
    tail = ALIASES.get(tail, tail)
    if tail not in ENGINES:
        raise UnknownEngine(engine=tail, spec=spec, choices=", ".join(ENGINES))
    return name, tail, None


def load_prompts(source: str | os.PathLike = "roles") -> dict:
    """A prompt set: built-in name (roles, quick) or a .json/.yaml/.txt file."""
    builtin = Path(__file__).parent / "data" / "prompts" / f"{source}.json"
    path = builtin if builtin.is_file() else Path(source).expanduser()
    if not path.is_file():
        raise BadPromptSet(source, "there is no built-in set or file of that name")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml  # safe_load: plain data only, never objects

            data = yaml.safe_load(text)
        else:
            data = [p.strip() for p in text.split("\n\n") if p.strip()]
    except Exception as exc:  # JSON or YAML syntax, or PyYAML missing
        raise BadPromptSet(path, f"it could not be read ({exc})") from exc
    if isinstance(data, dict):
        items, name = data.get("prompts"), data.get("name") or path.stem
    else:
        items, name = data, path.stem
    if not isinstance(items, list) or not items:
        raise BadPromptSet(path, "it holds no list of prompts")
    prompts = []
    for i, item in enumerate(items, 1):
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str) \
                or not item["prompt"].strip():
            raise BadPromptSet(path, f"prompt {i} has no text")
        pid = str(item.get("id") or f"p{i}")
        prompts.append({"id": pid, "title": str(item.get("title") or pid),
                        "system": item.get("system") or "", "prompt": item["prompt"]})
    ids = [p["id"] for p in prompts]
    if len(set(ids)) != len(ids):
        raise BadPromptSet(path, "two prompts have the same id")
    return {"name": name, "source": str(path), "prompts": prompts}


def describe_model(model, label: str) -> dict:
    """Provenance of one loaded model: file, sha256, engine and its version."""
    info = {"label": label, "name": model.name, "engine": model.engine_name,
            "engine_version": getattr(model, "version", None)}
    if model.engine_name == "llama.cpp":
        from importlib import metadata

        info["engine_version"] = metadata.version("llama-cpp-python")
    if model.engine_name == "remote":
        info.update(server=model.base_url, file=None, sha256=None,
                    quantization=None, note="the server does not say which file")
        return info
    facts = getattr(model, "facts", None)
    info.update(file=str(model.path), sha256=getattr(model, "sha256", None)
                or sha256_cached(model.path),
                quantization=facts.quantization if facts else None,
                file_size=facts.file_size if facts else None,
                parameters=facts.parameters if facts else None,
                n_ctx=model.n_ctx, n_threads=getattr(model, "n_threads", None),
                where=model.describe())
    return info


def machine_summary() -> dict:
    f = machine_facts()
    keep = ("python", "os", "machine", "cpu_model", "cores_physical",
            "cores_logical", "ram_total", "gpu_offload")
    out = {k: f.get(k) for k in keep}
    out["gpus"] = [g.get("name") for g in f.get("gpus") or []]
    return out


class Comparison:
    """The answers and figures of one comparison, with their provenance."""

    def __init__(self, prompt_set, models, runs, settings, machine):
        self.prompt_set, self.models, self.runs = prompt_set, models, runs
        self.settings, self.machine = settings, machine
        self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    @property
    def labels(self) -> list[str]:
        return [m["label"] for m in self.models]

    def answer(self, prompt_id: str, label: str) -> dict:
        return next(r for r in self.runs if r["prompt_id"] == prompt_id
                    and r["model"] == label)

    def figures(self):
        """One row per run: prompt, model, tokens, tokens/s, seconds (numbers)."""
        import pandas as pd

        cols = ["prompt_id", "model", "engine", "generated_tokens", "gen_tps",
                "ttft_s", "total_s", "answer_chars", "stop_reason", "error"]
        return pd.DataFrame([{c: r.get(c) for c in cols} for r in self.runs])

    def table(self, width: int | None = None):
        """Rows = prompts, columns = models; each cell: answer [tokens, tok/s]."""
        import pandas as pd

        rows = {}
        for p in self.prompt_set["prompts"]:
            rows[p["title"]] = {label: _cell(self.answer(p["id"], label), width)
                                for label in self.labels}
        return pd.DataFrame.from_dict(rows, orient="index", columns=self.labels)

    def to_dict(self) -> dict:
        return {"created": self.created, "kit_version": kit_version,
                "prompt_set": self.prompt_set, "settings": self.settings,
                "machine": self.machine, "models": self.models, "runs": self.runs}

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=2)
        return _write(path, text)

    def to_markdown(self, path=None) -> str:
        text = _markdown(self)
        return _write(path, text)


def _cell(run: dict, width: int | None) -> str:
    if run.get("error"):
        return f"[error: {run['error']}]"
    text = run["answer"].strip()
    if width and len(text) > width:
        text = text[: width - 1] + "…"
    # an answer cut by max_tokens ends mid-sentence: say so, not leave it hanging
    cut = ", cut at max_tokens" if run.get("stop_reason") == "length" else ""
    return (f"{text} [{run['generated_tokens']} tokens{cut}, "
            f"{run['gen_tps']:.1f} tok/s]")


def _md(text) -> str:
    """One table cell: no pipes or line breaks that would break the table."""
    return str(text).strip().replace("|", "\\|").replace("\n", "<br>") or "(empty)"


def _markdown(c: Comparison) -> str:
    st, m = c.settings, c.machine
    ram = f"{m['ram_total'] / 1024**3:.0f} GiB RAM" if m.get("ram_total") else "RAM ?"
    out = [f"# Comparison: {c.prompt_set['name']}", "",
           f"Created {c.created}. Machine: {m.get('cpu_model') or '?'}, "
           f"{m.get('cores_physical') or '?'} cores, {ram}, {m.get('os')}, "
           f"Python {m.get('python')}; GPU: {', '.join(m['gpus']) or 'none'}.", "",
           "Settings (the same for every run): " + ", ".join(
               f"{k}={v}" for k, v in st.items()), "",
           "| model | engine | version | quantization | file | sha256 |",
           "| --- | --- | --- | --- | --- | --- |"]
    for d in c.models:
        if d.get("error"):
            out.append(f"| {_md(d['label'])} | error: {_md(d['error'])} | | | | |")
            continue
        out.append(f"| {_md(d['label'])} | {d['engine']} | {d['engine_version']} | "
                   f"{d.get('quantization') or '?'} | "
                   f"{_md(d.get('file') or d.get('server'))} | {d.get('sha256') or '?'} |")
    for i, p in enumerate(c.prompt_set["prompts"], 1):
        out += ["", f"## {i}. {p['title']}", ""]
        if p["system"]:
            out.append(f"System: {_md(p['system'])}  ")
        out += [f"Prompt: {_md(p['prompt'])}", "",
                "| model | answer | tokens | tok/s | first token (s) |",
                "| --- | --- | ---: | ---: | ---: |"]
        for label in c.labels:
            r = c.answer(p["id"], label)
            answer = f"error: {r['error']}" if r.get("error") else r["answer"]
            out.append(f"| {_md(label)} | {_md(answer)} | {r['generated_tokens']} | "
                       f"{r['gen_tps']:.1f} | {r['ttft_s']:.2f} |")
    return "\n".join(out) + "\n"


def compare(models, prompts="roles", *, engine: str | None = None, n_ctx: int = 2048,
            n_threads: int | None = None, progress=None, **sampling) -> Comparison:
    """Run every prompt on every model with the same settings; see module doc.

    models: specs ('NAME', 'NAME@ENGINE', 'NAME@URL') or loaded models.
    sampling: temperature, seed, max_tokens, ... (defaults: greedy, seed 42).
    """

    prompt_set = prompts if isinstance(prompts, dict) else load_prompts(prompts)
    s = Sampling.make(Sampling(), **{**DEFAULTS, **sampling})
    say = progress or (lambda msg: None)
    described, runs = [], []
    for spec in models:
        error, model = None, spec
        if isinstance(spec, Engine):
            label = f"{spec.name}@{_engine_key(spec)}"
        else:
            name, eng, url = parse_spec(spec, engine)
            label = spec if "@" in spec or eng is None else f"{spec}@{eng}"
            try:
                model = load(name, engine=eng, base_url=url, n_ctx=n_ctx,
                             n_threads=n_threads, seed=s.seed, quiet=True)
            except KitError as exc:
                error = str(exc)
        if any(d["label"] == label for d in described):
            raise ListedTwice(label=label)
        described.append(describe_model(model, label) if error is None
                         else {"label": label, "error": error})
        for p in prompt_set["prompts"]:
            say(f"{label}: {p['title']}")
            runs.append(_run_one(model, label, p, s, error))
    settings = {**asdict(s), "stop": list(s.stop), "n_ctx": n_ctx,
                "n_threads": n_threads, "chat": True}
    return Comparison(prompt_set, described, runs, settings, machine_summary())


def _engine_key(model) -> str:
    return {"llama.cpp": "llamacpp"}.get(model.engine_name, model.engine_name)


def _run_one(model, label, p, s, error) -> dict:
    run = {"prompt_id": p["id"], "model": label, "answer": "", "error": error,
           "engine": None if error else _engine_key(model)}
    if error is None:
        messages = ([{"role": "system", "content": p["system"]}] if p["system"]
                    else []) + [{"role": "user", "content": p["prompt"]}]
        try:
            stream = model.chat(messages, s)
            run["answer"] = stream.text
            run.update(stream.stats.to_dict())
        except KitError as exc:
            run["error"] = str(exc)
    run["answer_chars"] = len(run["answer"])
    for key in ("generated_tokens", "prompt_tokens"):
        run.setdefault(key, 0)
    for key in ("gen_tps", "prompt_tps", "ttft_s", "total_s"):
        run.setdefault(key, 0.0)
    return run


def _write(path, text: str) -> str:
    if path:
        atomic_write_text(path, text)  # never a half-written report
    return text
