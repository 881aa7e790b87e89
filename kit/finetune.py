"""Teach a model your own facts: fine-tuning on a laptop CPU with llama.cpp.

Taught in notebooks/10_teach_it_your_facts.ipynb. Every weight is trained
(no adapter), in 32-bit floats, with AdamW; the native declarations live in
kit/engines/llama_train.py.

>>> run = finetune("smollm2:135m", bundled("library"), epochs=3, label="library")
>>> run.name, run.eval_losses     # 'smollm2:135m-ft-library', [1.9, 1.4, ...]
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.errors import (KitError, NotTextData, OutputExists, TrainingDataTooShort,
                        TrainingInProgress, TrainingTooLong, TrainingWontFit,
                        UnsupportedArchitecture)

SUPPORTED_ARCHS = ("llama",)  # the training path is run and tested on these
DATA_DIR = Path(__file__).parent / "data"
BUNDLED = {"library": "larkspur_library.txt", "library-qa": "larkspur_library_qa.jsonl",
           "general": "general_knowledge.json"}
CTX_STEP = 256  # llama.cpp makes contexts in steps of 256 (128 becomes 256)
# Rough speed of F32 training arithmetic per thread (6 x parameters x tokens
# FLOPs per step), measured on the starter with 2 threads on a shared laptop
# core; the warm-up decode measures this machine before training starts.
FLOPS_PER_THREAD = 15e9
OVERHEAD = 400_000_000  # Python, the tokenizer's model, buffers (measured)


def bundled(name: str = "library") -> Path:
    """A data file shipped with the kit: 'library', 'library-qa' or 'general'."""
    if name not in BUNDLED:
        raise KitError(f"No bundled data {name!r}. Choose one of: {', '.join(BUNDLED)}.")
    return DATA_DIR / BUNDLED[name]


# ---- data -----------------------------------------------------------------

def read_data(path) -> tuple[str, object]:
    """('text', str) or ('chat', [{'question':..., 'answer':...} or messages])."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotTextData(path, "there is no such file")
    raw = path.read_bytes()
    if b"\x00" in raw[:65536]:
        raise NotTextData(path, "it holds binary bytes (a model, a PDF, an image?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotTextData(path, f"it is not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from exc
    if not text.strip():
        raise NotTextData(path, "it is empty")
    if path.suffix.lower() not in (".json", ".jsonl"):
        return "text", text
    try:
        items = (json.loads(text) if path.suffix.lower() == ".json" else
                 [json.loads(line) for line in text.splitlines() if line.strip()])
    except json.JSONDecodeError as exc:
        raise NotTextData(path, f"it is not valid JSON ({exc})") from exc
    ok = isinstance(items, list) and items and all(
        isinstance(i, dict) and ({"question", "answer"} <= set(i) or "messages" in i)
        for i in items)
    if not ok:
        raise NotTextData(path, "each item needs \"question\" and \"answer\" "
                          "(or \"messages\")")
    return "chat", items


def chat_texts(llm, items, system: str | None = None) -> list[str]:
    """Each pair written out with the model's own chat template, answer included."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from kit.engines.llamacpp import FALLBACK_TEMPLATE

    m = llm._model
    eos, bos = llm.token_eos(), llm.token_bos()
    fmt = Jinja2ChatFormatter(
        template=(llm.metadata or {}).get("tokenizer.chat_template") or FALLBACK_TEMPLATE,
        eos_token=m.token_get_text(eos) if eos != -1 else "",
        bos_token=m.token_get_text(bos) if bos != -1 else "",
        add_generation_prompt=False)  # the answer follows: no empty turn after it
    out = []
    for item in items:
        msgs = item.get("messages") or [{"role": "user", "content": item["question"]},
                                        {"role": "assistant", "content": item["answer"]}]
        if system and msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": system}, *msgs]
        out.append(fmt(messages=msgs).prompt)
    return out


@dataclass
class Prepared:
    """Training data as the model's tokens, plus what it was made from."""

    tokens: list
    kind: str  # "text" or "chat"
    n_examples: int
    source: str
    first_text: str = ""  # the first example as the model sees it

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


def prepare(model=None, data=None, system: str | None = None,
            max_tokens: int | None = None) -> Prepared:
    """Read a data file (or a list of question/answer dicts) into tokens."""
    from kit.engines import load

    if isinstance(data, list):
        kind, content, source = "chat", data, "pairs"
    else:
        kind, content = read_data(data if data is not None else bundled())
        source = str(data)
    llm = load(model, n_ctx=512, quiet=True, check_fit=False).llm  # the tokenizer
    if kind == "text":
        texts = [content]
        tokens = llm.tokenize(content.encode("utf-8"), add_bos=True, special=False)
    else:
        texts = chat_texts(llm, content, system)
        tokens = []
        for t in texts:  # specials parsed: <|im_start|> is one token, as in chat
            tokens += llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)
    if max_tokens:
        tokens = tokens[:max_tokens]
    return Prepared(tokens, kind, len(texts), source, texts[0][:2000])


def split_windows(tokens, n_ctx: int, eval_share: float = 0.1):
    """(training windows, held-out windows), each window n_ctx + 1 tokens.

    The held-out tail is never trained on; training windows overlap by half.
    """
    w = n_ctx + 1
    n = len(tokens)
    if n < 2 * w:
        raise TrainingDataTooShort(n, 2 * w, n_ctx)
    n_eval = max(1, min(int(n * eval_share) // w, (n - w) // w))
    cut = n - n_eval * w
    evals = [tokens[cut + i * w: cut + (i + 1) * w] for i in range(n_eval)]
    stride = max(1, n_ctx // 2)
    starts = list(range(0, cut - w + 1, stride))
    if starts[-1] != cut - w:
        starts.append(cut - w)  # the last tokens before the tail are learnt too
    return [tokens[s: s + w] for s in starts], evals


# ---- will it fit, how long -----------------------------------------------------

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

    @property
    def fits(self) -> bool:
        return self.ram_available is None or self.memory <= self.ram_available

    def explain(self) -> str:
        gb = lambda n: f"{n / 1e9:.1f} GB"  # noqa: E731
        ram = f" of {gb(self.ram_available)} available" if self.ram_available else ""
        return (f"{self.model}: {self.n_train} training windows + {self.n_eval} "
                f"held out, {self.n_ctx} tokens each, {self.epochs} epoch(s), "
                f"{self.threads} threads. Memory: 4 copies x 4 bytes x "
                f"{self.parameters / 1e6:,.0f} M weights = {gb(16 * self.parameters)}"
                f" + activations and overhead = about {gb(self.memory)}{ram}. "
                f"Time: about {_minutes(self.seconds)} (rough: the machine decides).")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def plan(model=None, prepared: Prepared | None = None, n_ctx: int = 256,
         epochs: int = 3, threads: int | None = None,
         ram_available: int | None = None) -> Plan:
    """The arithmetic for training `model` on `prepared` (refusals included)."""
    from kit.machine import machine_facts
    from kit.models.registry import resolve
    from kit.modelfile import read_facts
    from kit.settings import get_settings

    ref = resolve(_name(model))
    facts = read_facts(ref.path)
    if facts.architecture not in SUPPORTED_ARCHS:
        raise UnsupportedArchitecture(facts.architecture, SUPPORTED_ARCHS)
    n_ctx = -(-n_ctx // CTX_STEP) * CTX_STEP
    n_train, n_eval = (len(x) for x in split_windows(prepared.tokens, n_ctx))
    threads = threads or get_settings().n_threads
    if ram_available is None:
        ram_available = machine_facts().get("ram_available")
    p = facts.parameters
    width, layers = facts.embedding_length or 1024, facts.block_count or 24
    act = n_ctx * (layers * width * 4 * 24 + (facts.vocab_size or 32000) * 4 * 4)
    memory = 16 * p + act + OVERHEAD
    step = 6 * p * n_ctx / (FLOPS_PER_THREAD * threads)
    seconds = epochs * (n_train + n_eval / 3) * step
    return Plan(ref.name, p, n_ctx, n_train, n_eval, epochs, threads, memory,
                ram_available, seconds)


def _name(model):
    return os.fspath(model) if isinstance(model, os.PathLike) else model


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
    want = {"F32": (gguf.GGMLQuantizationType.F32, np.float32),
            "F16": (gguf.GGMLQuantizationType.F16, np.float16)}[dtype.upper()]
    t0 = time.perf_counter()
    reader = gguf.GGUFReader(ref.path)
    arch = reader.fields["general.architecture"].contents()
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    try:
        w = gguf.GGUFWriter(partial, arch)
        for f in reader.fields.values():
            if f.name.startswith("GGUF.") or f.name in ("general.architecture",
                                                         "general.file_type"):
                continue
            sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
            w.add_key_value(f.name, f.contents(), f.types[0], sub)
        w.add_file_type(gguf.LlamaFileType.ALL_F32 if want[1] is np.float32
                        else gguf.LlamaFileType.MOSTLY_F16)
        # 1-D tensors (norms) stay F32, as llama.cpp's own converter keeps them
        kinds = [(t, np.float32 if len(t.shape) == 1 else want[1]) for t in reader.tensors]
        for t, dt in kinds:
            shape = [int(x) for x in reversed(t.shape)]
            w.add_tensor_info(t.name, shape, np.dtype(dt), int(np.prod(shape)) *
                              np.dtype(dt).itemsize)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for t, dt in kinds:  # one tensor at a time: memory stays small
            x = gguf.quants.dequantize(t.data, t.tensor_type)
            w.write_tensor_data(np.ascontiguousarray(x, dtype=dt).reshape(
                [int(s) for s in reversed(t.shape)]))
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


def _claim(lock: Path, name: str) -> None:
    """Create the lock file, or refuse if a live process holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
                os.kill(pid, 0)  # still running?
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # left by a run that died: take it
                continue
            except PermissionError:
                pass  # alive, someone else's
            raise TrainingInProgress(name, pid, lock)
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return
    raise TrainingInProgress(name, -1, lock)


def _graft(float_path: Path, trained: Path, out: Path) -> None:
    """The float copy's bytes and metadata, with the trained tensors' data.

    llama.cpp's saver drops the chat template and writes the training context
    as the model's context length: keep the original file's metadata instead.
    """
    import gguf

    shutil.copyfile(float_path, out)
    dst = gguf.GGUFReader(out, "r+")
    by_name = {t.name: t for t in dst.tensors}
    for t in gguf.GGUFReader(trained).tensors:
        d = by_name.get(t.name)
        if d is None or d.tensor_type != t.tensor_type or d.n_bytes != t.n_bytes:
            raise KitError(f"The trained tensor {t.name} does not match the float "
                           "copy; nothing was saved. Delete the copy and try again.")
        d.data[...] = t.data
    dst.data.flush()


def _check_loads(path: Path) -> None:
    """The saved file opens in llama.cpp and reads a few tokens."""
    import llama_cpp

    from kit.gguf_check import scan

    scan(path)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_batch=64, verbose=False)
    try:
        llm.eval(llm.tokenize(b"The library opens at", add_bos=True))
    finally:
        llm.close()


def train(float_path, train_w, eval_w, n_ctx: int, epochs: int, lr: float,
          threads: int, progress: bool = True, seed: int = 0, on_step=None):
    """Train a float model file in place of memory; yield nothing, return losses.

    Returns (llama, step losses, epoch losses, eval losses, seconds training).
    """
    import random

    import llama_cpp
    from tqdm import tqdm

    from kit.engines import llama_train as lt

    lt.ensure_supported()
    llm = llama_cpp.Llama(
        model_path=str(float_path), n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx,
        n_threads=threads, n_threads_batch=threads, use_mmap=False,  # writable
        flash_attn=False, type_k=llama_cpp.GGML_TYPE_F32,  # no F16 backward pass
        type_v=llama_cpp.GGML_TYPE_F32, verbose=False)
    if llm.n_ctx() != n_ctx:
        llm.close()
        raise KitError(f"llama.cpp made a context of {llm.n_ctx()} tokens, not "
                       f"{n_ctx}; use a multiple of {CTX_STEP}.")
    llm.eval(train_w[0][:n_ctx])  # the optimizer never sets the thread count:
    llm.reset()                   # this decode does
    params = lt.optimizer_params(lr)
    keep = lt.opt_init(llm._ctx.ctx, llm._model.model, n_ctx, params)  # noqa: F841
    ctx = llm._ctx.ctx
    train_ds = [lt.Dataset([w]) for w in train_w]
    eval_ds, r_train, r_eval = lt.Dataset(eval_w), lt.Result(), lt.Result()

    def held_out() -> float:
        r_eval.reset()
        lt.run_epoch(ctx, eval_ds, None, r_eval, 0)
        return r_eval.loss()

    steps, epoch_losses, evals = [], [], [held_out()]
    rng, t0 = random.Random(seed), time.perf_counter()
    bar = tqdm(total=epochs * len(train_ds), unit="step", disable=not progress,
               desc="training")
    try:
        for epoch in range(epochs):
            order = list(range(len(train_ds)))
            rng.shuffle(order)
            for i in order:
                r_train.reset()
                lt.run_epoch(ctx, train_ds[i], r_train, None, 1)  # one step
                steps.append(r_train.loss())
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{steps[-1]:.3f}")
                if on_step:
                    on_step(len(steps), steps[-1])
            epoch_losses.append(sum(steps[-len(order):]) / len(order))
            evals.append(held_out())
            bar.write(f"epoch {epoch + 1}: training loss {epoch_losses[-1]:.3f}, "
                      f"held-out loss {evals[-1]:.3f}")
    finally:
        bar.close()
        for d in (*train_ds, eval_ds, r_train, r_eval):
            d.close()
    return llm, steps, epoch_losses, evals, time.perf_counter() - t0


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

    from kit.models.registry import installed, register, resolve
    from kit.quantize import output_path
    from kit.settings import get_settings
    from kit.util import sha256_file

    say = (lambda *a: None) if quiet else print
    ref = resolve(_name(model))
    name = f"{ref.name}-ft-{label}"
    dst = output_path(ref.name, f"ft-{label}")
    if not force and (dst.exists() or name in installed()):
        raise OutputExists(dst, name)
    threads = threads or get_settings().n_threads
    prepared = prepare(ref.name, data, system, max_tokens)
    p = plan(ref.name, prepared, n_ctx, epochs, threads)
    say(p.explain())
    if not p.fits:
        raise TrainingWontFit(f"about {p.memory / 1e9:.1f} GB needed, "
                              f"{p.ram_available / 1e9:.1f} GB available")
    if max_minutes is not None and p.seconds > max_minutes * 60:
        raise TrainingTooLong(_minutes(p.seconds), max_minutes)
    lock = dst.with_name(dst.name + ".lock")
    _claim(lock, name)
    partial, trained = (dst.with_name(dst.name + s) for s in (".partial", ".trained"))
    try:
        src = float_copy(ref.name, quiet=quiet)
        train_w, eval_w = split_windows(prepared.tokens, p.n_ctx)
        llm, steps, ep, ev, secs = train(src, train_w, eval_w, p.n_ctx, epochs, lr,
                                         threads, progress)
        try:
            from kit.engines import llama_train as lt

            lt.save_model(llm._model.model, trained)
        finally:
            llm.close()
        _graft(src, trained, partial)
        _check_loads(partial)
        os.replace(partial, dst)
    except KeyboardInterrupt:
        say("Training stopped: nothing was saved or registered.")
        raise
    finally:
        for f in (partial, trained, lock):
            f.unlink(missing_ok=True)
    register(name, dst, sha256_file(dst), source="finetune", owned=True,
             base=ref.name, epochs=epochs, lr=lr, n_ctx=p.n_ctx, data=prepared.source)
    run = TrainingRun(name, dst, p, steps, ep, ev, secs,
                      epochs * len(train_w) * p.n_ctx / secs,
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    if quantize:
        from kit.quantize import quantize as requantize

        run.quantized = requantize(name, ["q8_0"], force=force, quiet=True)[0].name
    say(run.summary() + (f"; also {run.quantized}" if run.quantized else ""))
    return run
