"""Teach a model your own facts: fine-tuning on a laptop CPU with llama.cpp.

Taught in notebooks/10_teach_it_your_facts.ipynb. Every weight is trained
(no adapter), in 32-bit floats, with AdamW, by kit/engines/llama_train.py.

>>> run = finetune("smollm2:135m", bundled("library"), epochs=3, label="library")
>>> run.name, run.eval_losses     # 'smollm2:135m-ft-library', [1.9, 1.4, ...]
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.errors import (OutputExists, TrainingTooLong, TrainingWontFit,
                        UnsupportedArchitecture)
from kit.finetune_data import Prepared, bundled, prepare, read_data, split_windows
from kit.finetune_guard import (CTX_STEP, StepClock, check_settings, claim,
                                estimate_tokens, minutes, release, remove_leftovers)

SUPPORTED_ARCHS = ("llama",)  # the training path is run and tested on these
# F32 training arithmetic per thread and second (a step is 6 x weights x
# tokens), measured with the starter on this kind of laptop core when idle
FLOPS_PER_THREAD = 15e9
OVERHEAD = 400_000_000  # Python, the tokenizer's model, buffers (measured)


@dataclass
class Plan:
    """Memory and time, worked out before anything is loaded."""

    model: str
    parameters: int
    n_ctx: int
    n_train: int
    n_eval: int
    epochs: int
    threads: int
    memory: int
    ram_available: int | None
    seconds: float
    busy: float = 1.0  # how many times slower other programs make us now
    asked_ctx: int | None = None  # n_ctx as given, before rounding up

    def explain(self) -> str:
        gb = lambda n: f"{n / 1e9:.1f} GB"  # noqa: E731
        ram = f" of {gb(self.ram_available)} available" if self.ram_available else ""
        busy = (f", {self.busy:.1f}x slower than idle: other programs are busy"
                if self.busy > 1.2 else "")
        ctx = (f"{self.n_ctx} tokens each (n_ctx {self.asked_ctx} rounded up: "
               f"llama.cpp makes contexts in steps of {CTX_STEP})"
               if self.asked_ctx not in (None, self.n_ctx) else
               f"{self.n_ctx} tokens each")
        return (f"{self.model}: {self.n_train} training windows + {self.n_eval} "
                f"held out, {ctx}, {self.epochs} epoch(s), "
                f"{self.threads} threads. Memory: 4 copies x 4 bytes x "
                f"{self.parameters / 1e6:,.0f} M weights = {gb(16 * self.parameters)}"
                f" + activations and overhead = about {gb(self.memory)}{ram}. "
                f"Time: about {minutes(self.seconds)}{busy} (rough; measured "
                f"after the first steps).")


def plan(model=None, prepared: Prepared | None = None, n_ctx: int = 256,
         epochs: int = 3, threads: int | None = None,
         ram_available: int | None = None) -> Plan:
    """The arithmetic for training `model` on `prepared` (refusals included)."""
    from kit.machine import machine_facts
    from kit.settings import get_settings

    ref, facts = check_model(model)
    asked = n_ctx
    n_ctx = check_settings(epochs, 3e-5, n_ctx, threads,
                           context_length=facts.context_length)
    n_train, n_eval = (len(x) for x in split_windows(prepared.tokens, n_ctx))
    threads = threads or get_settings().n_threads
    m = machine_facts()
    ram_available = m.get("ram_available") if ram_available is None else ram_available
    cores = m.get("cores_logical") or threads
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = max(1.0, ((load + threads) / cores) ** 0.5)  # measured: not linear
    p = facts.parameters  # activations: per layer and position, plus the logits
    act = n_ctx * ((facts.block_count or 24) * (facts.embedding_length or 1024) * 64
                   + (facts.vocab_size or 32000) * 16)
    step = 6 * p * n_ctx / (FLOPS_PER_THREAD * min(threads, cores)) * busy
    return Plan(ref.name, p, n_ctx, n_train, n_eval, epochs, threads,
                16 * p + act + OVERHEAD, ram_available,
                epochs * (n_train + n_eval / 3) * step, busy, asked)


def _name(model):
    return os.fspath(model) if isinstance(model, os.PathLike) else model


def check_model(model=None):
    """(ModelRef, facts) if the training path supports the model's architecture."""
    from kit.models.registry import resolve
    from kit.modelfile import read_facts

    ref = resolve(_name(model))
    facts = read_facts(ref.path)  # a damaged file is refused here
    if facts.architecture not in SUPPORTED_ARCHS:
        raise UnsupportedArchitecture(facts.architecture, SUPPORTED_ARCHS)
    return ref, facts


# ---- a float copy, since quantized weights cannot be trained --------------------

def float_copy(model=None, dtype: str = "F32", quiet: bool = False) -> Path:
    """Dequantize every tensor with `gguf` into a new file; metadata unchanged."""
    import gguf
    import numpy as np

    from kit.gguf_check import scan
    from kit.models.registry import resolve
    from kit.quantize import output_path

    ref = resolve(_name(model))
    scan(ref.path)  # a damaged file is refused before we read it
    dst = output_path(ref.name, dtype.lower())
    if dst.is_file() and dst.stat().st_mtime >= ref.path.stat().st_mtime:
        return dst  # made before: reuse it
    want = {"F32": np.float32, "F16": np.float16}[dtype.upper()]
    t0, reader = time.perf_counter(), gguf.GGUFReader(ref.path)
    partial = dst.with_name(dst.name + ".partial")
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        w = gguf.GGUFWriter(partial, reader.fields["general.architecture"].contents())
        for f in reader.fields.values():
            if not f.name.startswith("GGUF.") and f.name not in (
                    "general.architecture", "general.file_type"):
                sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
                w.add_key_value(f.name, f.contents(), f.types[0], sub)
        w.add_file_type(gguf.LlamaFileType.ALL_F32 if want is np.float32
                        else gguf.LlamaFileType.MOSTLY_F16)
        # 1-D tensors (norms) stay F32, as llama.cpp's own converter keeps them
        plan_ = [(t, [int(x) for x in reversed(t.shape)],
                  np.dtype(np.float32 if len(t.shape) == 1 else want))
                 for t in reader.tensors]
        for t, shape, dt in plan_:
            w.add_tensor_info(t.name, shape, dt, int(np.prod(shape)) * dt.itemsize)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for t, shape, dt in plan_:  # one tensor at a time: memory stays small
            x = gguf.quants.dequantize(t.data, t.tensor_type)
            w.write_tensor_data(np.ascontiguousarray(x, dtype=dt).reshape(shape))
        w.close()
        scan(partial)
        os.replace(partial, dst)  # only a complete file gets the real name
    finally:
        partial.unlink(missing_ok=True)
    if not quiet:
        print(f"Made a {dtype.upper()} copy of {ref.name} in "
              f"{time.perf_counter() - t0:.0f} s: {dst}")
    return dst


# ---- training -------------------------------------------------------------------

@dataclass
class TrainingRun:
    """What a training run did, step by step and epoch by epoch."""

    name: str | None
    path: Path | None
    plan: Plan
    step_losses: list = field(default_factory=list)  # one per training window
    epoch_losses: list = field(default_factory=list)  # mean training loss
    eval_losses: list = field(default_factory=list)  # held out: before, each epoch
    seconds: float = 0.0
    tokens_per_s: float = 0.0
    peak_memory: int = 0
    quantized: str | None = None

    def summary(self) -> str:
        ev = " -> ".join(f"{x:.2f}" for x in self.eval_losses)
        return (f"{self.name}: held-out loss {ev}; {self.seconds:.0f} s, "
                f"{self.tokens_per_s:.0f} training tokens/s, peak memory "
                f"{self.peak_memory / 1e9:.1f} GB")


def _refuse(p: Plan, max_minutes: float | None) -> None:
    if p.ram_available and p.memory > p.ram_available:
        raise TrainingWontFit(f"about {p.memory / 1e9:.1f} GB needed, "
                              f"{p.ram_available / 1e9:.1f} GB available")
    if max_minutes is not None and p.seconds > max_minutes * 60:
        raise TrainingTooLong(minutes(p.seconds), max_minutes)


def _estimate_large(model, raw, n_ctx, epochs, threads, max_minutes, say) -> None:
    """For a large file, the plan from a sample, before minutes of tokenizing."""
    from kit.engines import load
    from kit.finetune_guard import SAMPLE_CHARS

    kind, content = raw
    text = content if kind == "text" else "\n".join(map(str, content))
    if len(text) <= SAMPLE_CHARS:
        return
    n = estimate_tokens(load(model, n_ctx=512, quiet=True, check_fit=False).llm, text)
    p = plan(model, Prepared(range(n), kind, 0, ""), n_ctx, epochs, threads)
    say(f"A large text ({len(text) / 1e6:.1f} M characters, about {n:,} tokens "
        f"from samples). {p.explain()}")
    _refuse(p, max_minutes)
    say(f"Turning all of it into tokens first (about {minutes(n / 80_000)}).")


def _claim(lock: Path, name: str) -> int:
    """The run's lock (kit.finetune_guard.claim)."""
    return claim(lock, name)


def finetune(model=None, data=None, *, epochs: int = 3, lr: float = 3e-5,
             n_ctx: int = 256, label: str = "ft", system: str | None = None,
             threads: int | None = None, max_minutes: float | None = 30,
             max_tokens: int | None = None, quantize: bool = False,
             force: bool = False, progress: bool = True, quiet: bool = False,
             seed: int = 0) -> TrainingRun:
    """Train every weight of `model` on `data`; register it as NAME-ft-LABEL.

    Nothing is saved or registered unless training finished and the saved
    file loads; Ctrl-C (or the notebook's stop button) leaves nothing behind.
    """
    import resource

    from kit.engines import llama_train as lt
    from kit.models.registry import installed, register
    from kit.quantize import output_path
    from kit.settings import get_settings
    from kit.util import sha256_file

    say = (lambda *a: None) if quiet else print
    check_settings(epochs, lr, n_ctx, threads, label, max_tokens, max_minutes)
    ref, _ = check_model(model)  # before loading anything
    name, dst = f"{ref.name}-ft-{label}", output_path(ref.name, f"ft-{label}")
    if not force and (dst.exists() or name in installed()):
        raise OutputExists(dst, name)
    threads = threads or get_settings().n_threads
    raw = ("chat", data) if isinstance(data, list) else read_data(
        data if data is not None else bundled())
    if not max_tokens:  # a large file: its estimate (or refusal) comes first
        _estimate_large(ref.name, raw, n_ctx, epochs, threads, max_minutes, say)
    prepared = prepare(ref.name, raw, system, max_tokens)
    prepared.source = "pairs" if isinstance(data, list) else str(data)
    p = plan(ref.name, prepared, n_ctx, epochs, threads)
    say(p.explain())
    _refuse(p, max_minutes)
    lock = dst.with_name(dst.name + ".lock")
    held = _claim(lock, name)
    partial, trained = (dst.with_name(dst.name + s) for s in (".partial", ".trained"))
    state = ""
    try:
        if gone := remove_leftovers(dst):
            say(f"Removed {len(gone)} half-written file(s) of a run that was stopped.")
        src = float_copy(ref.name, quiet=quiet)
        train_w, eval_w = split_windows(prepared.tokens, p.n_ctx)
        clock = StepClock(epochs * len(train_w), (epochs + 1) * len(eval_w) / 3,
                          p.seconds, max_minutes, say)
        llm, steps, ep, ev, secs = lt.train(src, train_w, eval_w, p.n_ctx, epochs, lr,
                                            threads, progress, seed, on_step=clock)
        lt.save_trained(llm, src, partial, trained)  # closes llm
        os.replace(partial, dst)
        state = "moved"
        register(name, dst, sha256_file(dst), source="finetune", owned=True,
                 base=ref.name, epochs=epochs, lr=lr, n_ctx=p.n_ctx,
                 data=prepared.source)
        state = "registered"
    except KeyboardInterrupt:
        say("Training stopped: nothing was saved or registered.")
        raise
    finally:
        for f in (partial, trained) + ((dst,) if state == "moved" else ()):
            f.unlink(missing_ok=True)
        release(lock, held)
    run = TrainingRun(name, dst, p, steps, ep, ev, secs,
                      epochs * len(train_w) * p.n_ctx / secs,
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if quantize:
        from kit.quantize import quantize as requantize

        run.quantized = requantize(name, ["q8_0"], force=force, quiet=True)[0].name
    say(run.summary() + (f"; also {run.quantized}" if run.quantized else ""))
    return run


def ask(model, questions, system: str | None = None, max_tokens: int = 40) -> list:
    """Greedy answers (temperature 0) in chat form, one per question."""
    from kit.engines import load, unload

    m = load(_name(model), quiet=True)
    head = [{"role": "system", "content": system}] if system else []
    try:
        return [m.chat(head + [{"role": "user", "content": q}], temperature=0,
                       max_tokens=max_tokens).text.strip() for q in questions]
    finally:
        unload(m)  # a float model is big: do not keep it cached


def retention(model, max_tokens: int = 24) -> tuple[int, list]:
    """How many of 10 general-knowledge questions it still answers right."""
    items = json.loads(bundled("general").read_text())
    answers = ask(model, [i["question"] for i in items], max_tokens=max_tokens)
    rows = [(i["question"], a, any(re.search(rf"(?<![\w.]){re.escape(k)}(?!\w|\.\d)",
                                             a, re.I) for k in i["accept"]))
            for i, a in zip(items, answers)]
    return sum(ok for *_, ok in rows), rows
