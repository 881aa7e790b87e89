"""Quantization: by hand in numpy, then with llama.cpp's own quantizer.

Taught in notebooks/03_quantization.ipynb.

>>> w = read_weights("smollm2:135m", "blk.0.attn_q.weight")   # 576 x 576
>>> q = quantize_q8_0(w); error_stats(w, q.dequantize())["rmse"]
>>> quantize("smollm2:135m", ["q8_0", "q4_k_m"])   # -> smollm2:135m-q8_0, ...
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.errors import (NoSuchTensor, NotEnoughDisk, OutputExists, QuantizeFailed,
                        UnknownQuantType)
from kit.engines.llama_private import restore_log_handler
from kit.engines.llamacpp import import_llama_cpp
from kit.gguf_check import scan
from kit.modelfile import facts_from_scan
from kit.util import (free_disk_bytes, human_size, partial_path, remove_stale,
                      sha256_file, stale_partials)
from kit.models.registry import installed, register, resolve
from kit.settings import get_settings

BLOCK = 32  # numbers per block in Q8_0 and Q4_0, each block with one scale


def _name(model):
    """A kit name, or a path given as str or Path (None: the default model)."""
    return os.fspath(model) if isinstance(model, os.PathLike) else model


# ---- by hand ------------------------------------------------------------------

def read_weights(model=None, tensor: str = "blk.0.attn_q.weight"):
    """One weight tensor of a GGUF file as float32 numbers (rows x columns)."""
    import gguf
    import numpy as np

    s = scan(resolve(_name(model)).path)  # checks the file before we read a byte
    by_name = {t.name: t for t in s.tensors}
    if tensor not in by_name:
        names = ", ".join(list(by_name)[:6])
        raise NoSuchTensor(tensor=tensor, names=names)
    t = by_name[tensor]
    qtype = gguf.GGMLQuantizationType[t.type_name]
    raw = np.memmap(s.path, dtype=np.uint8, mode="r", offset=t.offset,
                    shape=(t.n_bytes,))
    rows = t.n_elements // t.shape[0]  # GGUF lists the row length first
    values = gguf.quants.dequantize(np.array(raw).reshape(rows, -1), qtype)
    return values.reshape(rows, t.shape[0]).astype(np.float32)


def round_half_away(v):
    """Round like C's roundf: 2.5 -> 3, -2.5 -> -3 (numpy's round gives 2)."""
    import numpy as np

    a = np.abs(v)
    whole = np.floor(a)
    return np.sign(v) * (whole + (a - whole >= 0.5))


@dataclass
class Blocks:
    """Numbers stored as small integers, with one scale per block of 32."""

    kind: str  # "Q8_0" or "Q4_0"
    scales: object  # float16, one per block
    ints: object  # int8, (blocks, 32): -127..127 (Q8_0) or -8..7 (Q4_0)
    shape: tuple

    def dequantize(self):
        """Back to float32: each integer times its block's scale."""
        import numpy as np

        x = self.ints.astype(np.float32) * self.scales.astype(np.float32)[:, None]
        return x.reshape(self.shape)

    @property
    def bits_per_weight(self) -> float:
        return 8 * len(self.to_bytes()) / (self.ints.size or 1)

    def to_bytes(self) -> bytes:
        """The bytes a GGUF file holds: per block, the scale then the ints."""
        import numpy as np

        d = self.scales.astype(np.float16).view(np.uint8).reshape(-1, 2)
        if self.kind == "Q8_0":
            q = self.ints.astype(np.int8).view(np.uint8)
        else:  # two 4-bit numbers per byte: 0..15 (stored as value + 8)
            u = (self.ints + 8).astype(np.uint8)
            q = u[:, :BLOCK // 2] | (u[:, BLOCK // 2:] << 4)
        return np.concatenate([d, q], axis=1).tobytes()


def _blocks(weights):
    import numpy as np

    x = np.asarray(weights, dtype=np.float32)
    if x.size % BLOCK:
        raise ValueError(f"{x.size} numbers do not split into blocks of {BLOCK}")
    return x, x.reshape(-1, BLOCK)


def quantize_q8_0(weights) -> Blocks:
    """Q8_0: scale = largest |number| / 127, then round each number / scale."""
    import numpy as np

    x, b = _blocks(weights)
    scale = np.abs(b).max(axis=1) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(scale == 0, np.float32(0), np.float32(1) / scale)
    ints = round_half_away(b * inv[:, None]).astype(np.int8)
    return Blocks("Q8_0", scale.astype(np.float16), ints, x.shape)


def quantize_q4_0(weights) -> Blocks:
    """Q4_0: 16 levels, -8..7; the number furthest from 0 becomes exactly -8."""
    import numpy as np

    x, b = _blocks(weights)
    far = np.take_along_axis(b, np.abs(b).argmax(axis=1)[:, None], axis=1)[:, 0]
    scale = far / np.float32(-8)
    with np.errstate(divide="ignore"):
        inv = np.where(scale == 0, np.float32(0), np.float32(1) / scale)
    # llama.cpp shifts by 8.5 and truncates: the same as rounding, in 0..15
    u = np.minimum(15, np.trunc(b * inv[:, None] + np.float32(8.5)))
    return Blocks("Q4_0", scale.astype(np.float16), (u - 8).astype(np.int8), x.shape)


def reference_bytes(weights, kind: str = "Q8_0") -> bytes:
    """The same numbers quantized by the gguf package (llama.cpp's algorithm)."""
    import gguf
    import numpy as np

    qtype = gguf.GGMLQuantizationType[kind]
    return gguf.quants.quantize(np.asarray(weights, np.float32), qtype).tobytes()


BY_HAND_TYPES = ("Q8_0", "Q5_1", "Q5_0", "Q4_1", "Q4_0")


def round_trip(weights, kind: str = "Q8_0"):
    """Quantize with the gguf package's reference code, then back to float32."""
    import gguf
    import numpy as np

    if kind not in BY_HAND_TYPES:
        raise UnknownQuantType(kind, BY_HAND_TYPES)
    qtype = gguf.GGMLQuantizationType[kind]
    x = np.asarray(weights, np.float32)
    return gguf.quants.dequantize(gguf.quants.quantize(x, qtype), qtype).reshape(x.shape)


def error_stats(original, restored) -> dict:
    """How far the restored numbers are from the originals."""
    import numpy as np

    err = np.asarray(restored, np.float64) - np.asarray(original, np.float64)
    rms = float(np.sqrt(np.mean(np.square(original, dtype=np.float64))))
    rmse = float(np.sqrt(np.mean(err ** 2)))
    return {"rmse": rmse, "max_error": float(np.abs(err).max()),
            "relative_error": rmse / rms if rms else 0.0}


# ---- with llama.cpp's quantizer ---------------------------------------------------

# kit name -> llama.cpp file type (LLAMA_FTYPE_MOSTLY_<value>), smallest last
QUANT_TYPES = {
    "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q6_k": "Q6_K",
    "q5_k_m": "Q5_K_M", "q5_k_s": "Q5_K_S", "q5_1": "Q5_1", "q5_0": "Q5_0",
    "q4_k_m": "Q4_K_M", "q4_k_s": "Q4_K_S", "q4_1": "Q4_1", "q4_0": "Q4_0",
    "q3_k_l": "Q3_K_L", "q3_k_m": "Q3_K_M", "q3_k_s": "Q3_K_S", "q2_k": "Q2_K",
}
DEFAULT_TYPES = ("q8_0", "q5_k_m", "q4_k_m", "q3_k_m", "q2_k")
TYPICAL_BITS = dict(zip(QUANT_TYPES, (16, 16, 8.5, 6.6, 5.7, 5.5, 6, 5.5, 4.9, 4.6,
                                     5, 4.5, 4.3, 3.9, 3.5, 3.4)))  # per weight
K_BLOCK = 256  # K-quants pack 256 numbers per super-block
_PROGRESS = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
_FALLBACK = re.compile(r"(\S+)\s+- ncols\s+(\d+) not divisible by (\d+) "
                       r"\(required for type\s+(\S+)\)\s+-> falling back to\s+(\S+)")


@dataclass
class Fallback:
    """Tensors that got another type than the one asked for, and why."""

    wanted: str
    got: str
    reason: str
    tensors: list = field(default_factory=list)

    def line(self) -> str:
        n = len(self.tensors)
        return (f"{n} tensor{'s' if n > 1 else ''} {self.wanted} -> {self.got}: "
                f"{self.reason} (e.g. {self.tensors[0]})")


@dataclass
class Variant:
    """One quantized file the kit made, registered as `name`."""

    name: str
    qtype: str
    path: Path
    size: int
    parameters: int
    bits_per_weight: float
    seconds: float
    tensor_types: dict  # type -> number of tensors
    fallbacks: list

    def summary(self) -> str:
        types = ", ".join(f"{n} {t}" for t, n in self.tensor_types.items())
        return (f"{self.name}: {human_size(self.size)}, {self.bits_per_weight:.2f}"
                f" bits per weight, {self.seconds:.1f} s ({types})")

    def row(self) -> dict:
        return {"name": self.name, "type": self.qtype, "size_mb": self.size / 1e6,
                "bits_per_weight": self.bits_per_weight, "seconds": self.seconds,
                "fallback_tensors": sum(len(f.tensors) for f in self.fallbacks)}


def parse_types(types) -> list[str]:
    """'q8_0,Q4_K_M' or a list -> ['q8_0', 'q4_k_m']; unknown names are refused."""
    items = types.split(",") if isinstance(types, str) else list(types)
    out = []
    for item in (str(t).strip().lower() for t in items):
        if item and item not in QUANT_TYPES:
            raise UnknownQuantType(item, QUANT_TYPES)
        if item and item not in out:
            out.append(item)
    if not out:
        raise UnknownQuantType("", QUANT_TYPES)
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def output_path(base_name: str, qtype: str, out_dir=None) -> Path:
    """Where `quantize` writes a variant: models/<base>/<base>-<type>.gguf."""

    folder = Path(out_dir) if out_dir else get_settings().models_dir / _slug(base_name)
    return folder / f"{_slug(base_name)}-{qtype}.gguf"


def find_fallbacks(path, qtype: str, log: str = "") -> list[Fallback]:
    """Compare each tensor's type in `path` with what `qtype` asks for."""

    ftype = QUANT_TYPES[qtype]
    base = ftype[:4] if "_K" in ftype else ftype  # "Q4_K_M" -> "Q4_K"
    told = {m[0]: m for m in _FALLBACK.findall(log)}  # llama.cpp's own words
    groups: dict[tuple, Fallback] = {}
    for t in scan(path).tensors:
        if t.name in told:
            _, ncols, need, wanted, got = told[t.name]
            wanted, got = wanted.upper(), got.upper()
            reason = f"row size {ncols} not divisible by {need}"
        elif (base.endswith("_K") and len(t.shape) > 1 and t.shape[0] % K_BLOCK
              and t.type_name not in ("F32", "F16")
              and not t.type_name.endswith("_K")):  # judged from the file
            wanted, got = base, t.type_name
            reason = f"row size {t.shape[0]} not divisible by {K_BLOCK}"
        else:
            continue
        key = (wanted, got, reason)
        groups.setdefault(key, Fallback(wanted, got, reason)).tensors.append(t.name)
    return sorted(groups.values(), key=lambda f: -len(f.tensors))


def _run_quantizer(src: Path, dst: Path, qtype: str, threads: int, progress):
    """Call llama.cpp's quantizer; return (ok, log text, interrupted)."""
    import ctypes

    llama_cpp = import_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + QUANT_TYPES[qtype])
    params.allow_requantize = True  # the starting file may itself be quantized
    params.nthread = threads
    lines, state = [], {"interrupted": False}

    @llama_cpp.llama_log_callback
    def on_log(level, text, user_data):
        # Runs inside the native call: never let an exception escape (ctypes
        # would print it and carry on); remember a Ctrl-C for afterwards.
        try:
            line = text.decode("utf-8", "replace")
            lines.append(line)
            m = _PROGRESS.match(line)
            if m and progress:
                progress(qtype, int(m[1]), int(m[2]))
        except BaseException:  # KeyboardInterrupt included
            state["interrupted"] = True

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    try:
        rc = llama_cpp.llama_model_quantize(os.fsencode(src), os.fsencode(dst),
                                            ctypes.byref(params))
    finally:
        restore_log_handler()
    return rc == 0, "".join(lines), state["interrupted"]


def quantize(model=None, types=DEFAULT_TYPES, *, force: bool = False, out_dir=None,
             name: str | None = None, threads: int | None = None, progress=None,
             quiet: bool = False) -> list[Variant]:
    """Make one quantized file per type with llama.cpp; register each as NAME-TYPE.

    Each file is written to a .partial path and renamed only when complete and
    valid; a failure or Ctrl-C leaves nothing registered, and the next run
    removes a killed run's .partial and skips the types already made.
    """
    qtypes = parse_types(types)
    ref = resolve(_name(model))
    base = name or ref.name
    source = scan(ref.path)  # a bad file never reaches the native quantizer
    threads = threads or get_settings().n_threads
    plan = [(q, f"{base}-{q}", output_path(base, q, out_dir)) for q in qtypes]
    known = installed()
    say = (lambda *a: None) if quiet else print
    todo, done = [], []
    for q, vname, dst in plan:  # decide before doing any work
        entry = known.get(vname)
        if force or not (dst.exists() or entry):
            todo.append((q, vname, dst))
        elif entry and dst.is_file() and entry["path"] == os.path.abspath(dst):
            say(f"{vname} was made before ({dst}); --force makes it again.")
            done.append(_variant(vname, q, dst, scan(dst), 0.0, ""))
        else:
            raise OutputExists(dst if dst.exists() else entry["path"], vname)
    _make_room(ref.name, source, todo, say)
    for q, vname, dst in todo:
        new_dir = not dst.parent.exists()
        dst.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(dst)  # this run's own: a second run writes its own
        try:
            t0 = time.perf_counter()
            ok, log, interrupted = _run_quantizer(ref.path, partial, q, threads,
                                                  progress)
            seconds = time.perf_counter() - t0
            if interrupted:
                raise KeyboardInterrupt
            if not ok or not partial.is_file():
                raise _failure(f"{ref.name} to {q}", log)
            s = scan(partial)  # complete and readable, or BadModelFile
            os.replace(partial, dst)  # only a finished file gets the real name
        finally:
            partial.unlink(missing_ok=True)
            if new_dir and not dst.exists() and not any(dst.parent.iterdir()):
                dst.parent.rmdir()  # leave no empty folder behind a failure
        register(vname, dst, sha256_file(dst), source="quantize", owned=True,
                 base=ref.name, quant_type=q)
        v = _variant(vname, q, dst, s, seconds, log)
        say(v.summary())
        for f in v.fallbacks:
            say("   fallback:", f.line())
        done.append(v)
    return sorted(done, key=lambda v: qtypes.index(v.qtype))


def _variant(vname, q, dst, s, seconds, log) -> Variant:
    facts, counts = facts_from_scan(s), {}
    for t in s.tensors:
        counts[t.type_name] = counts.get(t.type_name, 0) + 1
    return Variant(vname, q, dst, facts.file_size, facts.parameters,
                   facts.bits_per_weight, seconds,
                   dict(sorted(counts.items(), key=lambda kv: -kv[1])),
                   find_fallbacks(dst, q, log))


def estimated_size(s, qtype: str) -> int:
    """About how many bytes a `qtype` variant of the scanned file takes."""
    return s.data_offset + int(sum(t.n_elements for t in s.tensors) * TYPICAL_BITS[qtype] / 8)


def _make_room(name: str, s, todo, say) -> None:
    """Remove what a killed run left; refuse before writing what cannot fit."""
    need, need_q = {}, [q for q, *_ in todo]
    for q, _, dst in todo:
        for partial in stale_partials(dst):  # a run that was killed left it
            if (size := remove_stale(partial)) is not None:
                say(f"Removed {partial} ({human_size(size)}), left by a stopped run.")
        need[dst.parent] = need.get(dst.parent, 0) + estimated_size(s, q)
    for folder, n in need.items():
        if n > (free := free_disk_bytes(folder)):
            raise NotEnoughDisk(f"quantizing {name} to {', '.join(need_q)}", n, free, folder)


def _failure(what: str, log: str) -> QuantizeFailed:
    m = re.search(r"failed to quantize: (.+)", log)  # else its last line
    said = m[1].strip() if m else ([ln for ln in log.splitlines() if ln.strip()] or ["nothing"])[-1]
    full = "iostream error" in log or "No space left" in log  # C++ for ENOSPC
    return QuantizeFailed(what, "the disk is full, so llama.cpp could not write "
                          f"the file (it said: {said}). Free some space (`kit rm "
                          "NAME` removes a model)" if full else f"llama.cpp said: {said}")
