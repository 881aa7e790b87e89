"""Fuzzing: crafted and mutated GGUF files never crash, hang or show a traceback.

Every case derives from the real starter model: its own header with one
setting changed (the weights left as sparse zeros, so each file takes a few
MB of disk however large it claims to be), or a small model cut from it (2
blocks, 2,048 tokens) that is then mutated: settings with crafted values or
wrong types, keys removed, tensor shapes and types changed, truncations, bit
flips and random bytes in the header. Each file goes through `kit info` and
`kit.load` plus two generated tokens (llama.cpp asserted on a NaN epsilon only
at the first token), in worker processes that take many files each. A worker
killed by a signal marks its file as a crash and a new worker carries on.
"""
from __future__ import annotations

import io
import json
import os
import queue
import random
import struct
import subprocess
import sys
import threading
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f",
       BOOL: "?", U64: "Q", I64: "q", F64: "d"}
NAN, INF = float("nan"), float("inf")
PER_FILE_S = 60  # far above the ~0.3 s a file takes: only a hang gets there
WORKERS = 2


# ---- a small GGUF header reader and writer, independent of the kit ---------

def parse(path) -> dict:
    """The header of a GGUF file: raw typed values, tensor infos, data offset."""
    with open(path, "rb") as f:
        head = f.read(8 << 20)
    _, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", head, 0)
    pos = 24

    def text(p):
        n = struct.unpack_from("<Q", head, p)[0]
        return head[p + 8:p + 8 + n], p + 8 + n

    def skip(t, p):
        if t in FMT:
            return p + struct.calcsize(FMT[t])
        if t == STR:
            return text(p)[1]
        et, n = struct.unpack_from("<IQ", head, p)
        p += 12
        if et in FMT:
            return p + n * struct.calcsize(FMT[et])
        for _ in range(n):
            p = skip(et, p)
        return p

    kvs = []
    for _ in range(n_kv):
        key, pos = text(pos)
        end = skip(struct.unpack_from("<I", head, pos)[0], pos + 4)
        kvs.append((key.decode(), head[pos:end]))
        pos = end
    tensors = []
    for _ in range(n_tensors):
        name, pos = text(pos)
        nd = struct.unpack_from("<I", head, pos)[0]
        dims = list(struct.unpack_from(f"<{nd}Q", head, pos + 4))
        typ, off = struct.unpack_from("<IQ", head, pos + 4 + 8 * nd)
        pos += 16 + 8 * nd
        tensors.append((name.decode(), dims, typ, off))
    return {"version": version, "kvs": kvs, "tensors": tensors,
            "data_off": -(-pos // 32) * 32, "size": os.path.getsize(path)}


def _text(s) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def val(t: int, v) -> bytes:
    """A typed metadata value as the file stores it."""
    if t == STR:
        return struct.pack("<I", STR) + _text(v)
    return struct.pack("<I", t) + struct.pack("<" + FMT[t], v)


def arr(t: int, items) -> bytes:
    body = b"".join(_text(v) if t == STR else struct.pack("<" + FMT[t], v)
                    for v in items)
    return struct.pack("<IIQ", ARR, t, len(items)) + body


def header(h: dict) -> bytes:
    out = struct.pack("<4sIQQ", b"GGUF", h["version"], len(h["tensors"]),
                      len(h["kvs"]))
    out += b"".join(_text(k) + raw for k, raw in h["kvs"])
    for name, dims, typ, off in h["tensors"]:
        out += (_text(name) + struct.pack(f"<I{len(dims)}Q", len(dims), *dims)
                + struct.pack("<IQ", typ, off))
    return out + b"\0" * (-len(out) % 32)


def write(path: Path, h: dict, data_size: int) -> Path:
    """Header, then data_size bytes of zeros that take no disk (sparse)."""
    raw = header(h)
    with open(path, "wb") as f:
        f.write(raw)
        f.truncate(len(raw) + data_size)
    return path


def get(h: dict, key: str):
    return next((raw for k, raw in h["kvs"] if k == key), None)


def setkv(h: dict, key: str, raw: bytes | None) -> dict:
    """A copy of h with key set to raw (None: removed)."""
    kvs = [(k, r) for k, r in h["kvs"] if k != key]
    if raw is not None:
        at = next((i for i, (k, _) in enumerate(h["kvs"]) if k == key), len(kvs))
        kvs.insert(at, (key, raw))
    return {**h, "kvs": kvs}


def retensor(h: dict, change) -> dict:
    """A copy of h with change(list of [name, dims, type, offset]) applied."""
    tensors = [[n, list(d), t, o] for n, d, t, o in h["tensors"]]
    change(tensors)
    return {**h, "tensors": [tuple(t) for t in tensors]}


def _strings(raw: bytes) -> list[bytes]:
    _, _, n = struct.unpack_from("<IIQ", raw, 0)
    out, p = [], 16
    for _ in range(n):
        k = struct.unpack_from("<Q", raw, p)[0]
        out.append(raw[p + 8:p + 8 + k])
        p += 8 + k
    return out


def _nbytes(dims, typ) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(typ)]
    n = 1
    for d in dims:
        n *= d
    return n // block * size


def layout(h: dict) -> tuple[dict, int]:
    """Tensor offsets packed afresh (32-byte aligned); returns (h, data size)."""
    tensors, at = [], 0
    for name, dims, typ, _ in h["tensors"]:
        tensors.append((name, dims, typ, at))
        at += -(-_nbytes(dims, typ) // 32) * 32
    return {**h, "tensors": tensors}, at


def small_model(full: dict, n_blocks: int = 2, n_vocab: int = 2048) -> dict:
    """The starter cut down: its first blocks and its first n_vocab tokens."""
    tokens = _strings(get(full, "tokenizer.ggml.tokens"))[:n_vocab]
    keep = set(tokens)
    merges = [m for m in _strings(get(full, "tokenizer.ggml.merges"))
              if all(p in keep for p in m.split(b" ", 1))
              and m.replace(b" ", b"", 1) in keep]
    types = list(struct.unpack_from(f"<{n_vocab}i", get(
        full, "tokenizer.ggml.token_type"), 16))
    h = setkv(full, "llama.block_count", val(U32, n_blocks))
    h = setkv(h, "llama.vocab_size", val(U32, n_vocab))
    h = setkv(h, "tokenizer.ggml.tokens", arr(STR, tokens))
    h = setkv(h, "tokenizer.ggml.merges", arr(STR, merges))
    h = setkv(h, "tokenizer.ggml.token_type", arr(I32, types))

    def cut(ts):
        ts[:] = [t for t in ts if not t[0].startswith("blk.")
                 or int(t[0].split(".")[1]) < n_blocks]
        for t in ts:
            if t[0] == "token_embd.weight":
                t[1][1] = n_vocab
    return retensor(h, cut)


# ---- the cases ----------------------------------------------------------------

def _tensor_cases(h: dict) -> dict:
    def shape(name, dims=None, typ=None):
        def change(ts):
            for t in ts:
                if t[0] == name:
                    t[1] = dims if dims is not None else t[1]
                    t[2] = typ if typ is not None else t[2]
        return change

    def edit(fn):
        def change(ts):
            fn(ts)
        return change

    changes = {
        "embd_rows": shape("token_embd.weight", [576, 2047]),
        "embd_width": shape("token_embd.weight", [512, 2048]),
        "attn_k_width": shape("blk.0.attn_k.weight", [576, 576]),
        "attn_q_3d": shape("blk.0.attn_q.weight", [576, 576, 1]),
        "norm_2d": shape("blk.1.attn_norm.weight", [576, 2]),
        "norm_q8": shape("blk.0.ffn_norm.weight", typ=8),
        "norm_q4_1": shape("output_norm.weight", typ=3),
        "norm_f16": shape("blk.0.ffn_norm.weight", typ=1),
        "norm_bf16": shape("blk.1.attn_norm.weight", typ=30),
        "ffn_f16": shape("blk.0.ffn_up.weight", typ=1),
        "ffn_short": shape("blk.1.ffn_down.weight", [1536, 575]),
        "type_99": shape("blk.0.attn_v.weight", typ=99),
        "zero_dim": shape("blk.0.attn_v.weight", [576, 0]),
        "huge_dim": shape("blk.0.attn_v.weight", [576, 2**62]),
        "drop_norm": edit(lambda ts: ts.pop(next(
            i for i, t in enumerate(ts) if t[0] == "output_norm.weight"))),
        "drop_embd": edit(lambda ts: ts.pop(0)),
        "dup_name": edit(lambda ts: ts.__setitem__(2, [ts[1][0], *ts[2][1:]])),
        "extra_block": edit(lambda ts: ts.append(["blk.7.attn_norm.weight",
                                                  [576], 0, 0])),
        "long_name": edit(lambda ts: ts.__setitem__(1, ["x" * 80, *ts[1][1:]])),
        "no_tensors": edit(lambda ts: ts.clear()),
        "renamed": edit(lambda ts: ts.__setitem__(1, ["blk.0.bogus.weight",
                                                      *ts[1][1:]])),
    }
    cases = {}
    for name, change in changes.items():
        try:
            laid = layout(retensor(h, change))
        except (KeyError, ValueError, StopIteration):  # gguf cannot size it
            laid = (None, 2**63)
        if laid[1] > 2**32:  # keep the offsets that were there
            laid = (retensor(h, change), layout(h)[1])
        cases["tensor_" + name] = laid
    return cases


def _offset_cases(h: dict, data: int) -> dict:
    def move(i, off):
        def change(ts):
            ts[i][3] = off
        return (retensor(h, change), data)

    return {"offset_misaligned": move(3, h["tensors"][3][3] + 1),
            "offset_overlap": move(3, h["tensors"][2][3]),
            "offset_past_end": move(3, data + 4096),
            "offset_huge": move(3, 2**63)}


def _setting_cases(h: dict) -> dict:
    a = "llama."
    eps = a + "attention.layer_norm_rms_epsilon"
    crafted = {
        a + "block_count": [val(U32, 0), val(U32, 1), val(U32, 3), val(U32, 513),
                            val(U32, 1000), val(U32, 2**32 - 1), val(F32, 2.0),
                            val(STR, "2"), arr(U32, [2, 2])],
        eps: [val(F32, NAN), val(F32, INF), val(F32, -INF), val(F32, -1e-5),
              val(F32, 0.0), val(F64, NAN), val(U32, 1), val(STR, "1e-5")],
        a + "attention.head_count": [val(U32, 0), val(U32, 7), val(U32, 1000),
                                     val(U32, 2**32 - 1), arr(U32, [9, 3]),
                                     arr(U32, [9, 0]), arr(U32, [9] * 5),
                                     val(F32, 9.0)],
        a + "attention.head_count_kv": [val(U32, 0), val(U32, 2), val(U32, 9),
                                        val(U32, 27), arr(U32, [3, 9]),
                                        arr(U32, [3, 0]), arr(U32, [3, 1]),
                                        val(I32, -3)],
        a + "embedding_length": [val(U32, 0), val(U32, 575), val(U32, 1152),
                                 val(U32, 2**31)],
        a + "context_length": [val(U32, 0), val(U32, 1), val(U32, 2**31),
                               val(U32, 2**32 - 1), val(I64, -1), val(U64, 2**40)],
        a + "feed_forward_length": [val(U32, 0), val(U32, 1535), arr(U32, [1536, 0])],
        a + "rope.dimension_count": [val(U32, 0), val(U32, 63), val(U32, 2**31)],
        a + "rope.freq_base": [val(F32, NAN), val(F32, 0.0), val(F32, -1.0),
                               val(F32, INF)],
        a + "rope.scaling.type": [val(STR, "bogus"), val(STR, ""), val(STR, "yarn"),
                                  val(U32, 1)],
        a + "rope.scaling.factor": [val(F32, NAN), val(F32, 0.0), val(F32, -4.0)],
        a + "expert_count": [val(U32, 4), val(U32, 5000)],
        a + "expert_used_count": [val(U32, 2), arr(U32, [1, 1])],
        a + "expert_group_count": [val(U32, 2)],
        a + "nextn_predict_layers": [val(U32, 3)],
        a + "attention.key_length": [val(U32, 0), val(U32, 32)],
        a + "attention.value_length": [val(U32, 0), val(U32, 128)],
        a + "vocab_size": [val(U32, 0), val(U32, 10**9)],
        "general.architecture": [val(STR, "bert"), val(STR, "nope"), val(STR, ""),
                                 val(U32, 1)],
        "general.alignment": [val(U32, 0), val(U32, 3), val(U32, 64),
                              val(U64, 32)],
        "general.file_type": [val(U32, 9999), val(STR, "Q4_1")],
        "general.name": [val(STR, b"\xff\xfe\xfd"), val(STR, "x" * 100000)],
        "tokenizer.ggml.model": [val(STR, "llama"), val(STR, "bert"),
                                 val(STR, "t5"), val(STR, "rwkv"), val(STR, "zzz"),
                                 val(STR, "no_vocab"), val(U32, 1),
                                 arr(STR, ["gpt2"])],
        "tokenizer.ggml.pre": [val(STR, "zzz"), val(STR, "llama3")],
        "tokenizer.ggml.bos_token_id": [val(U32, 10**6), val(I32, -1),
                                        val(U32, 2**32 - 1)],
        "tokenizer.ggml.eos_token_id": [val(U32, 10**6), val(I32, -5)],
        "tokenizer.ggml.add_bos_token": [val(BOOL, True), val(U32, 1)],
        "tokenizer.ggml.token_type": [arr(I32, [1] * 10), arr(I32, [99] * 2048),
                                      arr(STR, ["1"] * 2048)],
        "tokenizer.ggml.scores": [arr(F32, [NAN] * 2048), arr(F32, [0.0] * 3)],
        "tokenizer.ggml.merges": [arr(STR, ["a"] * 5 + [" ", ""]), arr(U32, [1])],
        "tokenizer.ggml.tokens": [arr(STR, ["a"] * 2048), arr(STR, []),
                                  arr(U32, list(range(2048)))],
        "tokenizer.chat_template": [val(STR, b"\xff{{ x"), val(U32, 3),
                                    val(STR, "{% if x %}y{% endif %}" * 40000),
                                    val(STR, "{{" + "(" * 3000 + ")" * 3000 + "}}"),
                                    val(STR, "{% for %}")],  # llama-cpp-python
        "tokenizer.chat_template.tool_use": [val(STR, "{% fo2 m in x %}")],  # compiles
    }
    cases = {}
    for key, values in crafted.items():
        for i, raw in enumerate(values):
            cases[f"set_{key}_{i}"] = setkv(h, key, raw)
        if get(h, key) is not None:
            cases[f"del_{key}"] = setkv(h, key, None)
    tokens = _strings(get(h, "tokenizer.ggml.tokens"))
    for i, j in ((5, 6), (300, 301), (0, 2047)):
        dup = list(tokens)
        dup[i] = dup[j]
        cases[f"vocab_duplicate_{i}"] = setkv(h, "tokenizer.ggml.tokens",
                                              arr(STR, dup))
    cases["vocab_empty_entry"] = setkv(h, "tokenizer.ggml.tokens",
                                       arr(STR, [b""] + tokens[1:]))
    cases["vocab_bad_utf8"] = setkv(h, "tokenizer.ggml.tokens",
                                    arr(STR, [b"\xff", b"\xfe"] + tokens[2:]))
    tiny = setkv(setkv(h, "tokenizer.ggml.bos_token_id", None),
                 "tokenizer.ggml.add_bos_token", val(BOOL, True))
    cases["spm_without_bos"] = setkv(tiny, "tokenizer.ggml.model", val(STR, "llama"))
    return cases


def _arch_cases(h: dict) -> dict:
    """The same weights under other architectures' names (some need experts,
    RoPE sections, ... that llama.cpp asserts on: kit.engines.llama_probe)."""
    cases = {}
    for arch in ("smallthinker", "paddleocr", "bailingmoe2", "qwen2", "qwen3",
                 "gemma3", "phi3", "granite", "nope"):
        kvs = [(arch + k[5:] if k.startswith("llama.") else k, raw)
               for k, raw in h["kvs"]]
        cases[f"arch_{arch}"] = setkv({**h, "kvs": kvs}, "general.architecture",
                                      val(STR, arch))
    for arch in ("qwen2", "qwen3"):  # head sizes their graphs assert on
        cases[f"arch_{arch}_rope_32"] = setkv(
            cases[f"arch_{arch}"], f"{arch}.rope.dimension_count", val(U32, 32))
        cases[f"arch_{arch}_values_32"] = setkv(
            cases[f"arch_{arch}"], f"{arch}.attention.value_length", val(U32, 32))
    return cases


INTS = [0, 1, 2, 3, 8, 9, 31, 64, 255, 256, 512, 513, 2047, 2048, 65535,
        2**31 - 1, 2**31, 2**32 - 1]
FLOATS = [NAN, INF, -INF, -1.0, 0.0, 1e-30, 1e30, 0.5, 1e-5]
MORE_KEYS = ["llama.attention.sliding_window", "llama.rope.scaling.yarn_ext_factor",
             "llama.attention.clamp_kqv", "llama.logit_scale", "llama.attention.scale",
             "llama.final_logit_softcapping", "llama.expert_shared_count",
             "llama.leading_dense_block_count", "llama.rope.dimension_sections",
             "llama.attention.kv_lora_rank", "tokenizer.ggml.token_type_count",
             "llama.pooling_type"]


def _random_setting_cases(h: dict, rng: random.Random, n: int) -> dict:
    """1 to 3 settings each given a random value of a random type."""
    keys = [k for k, _ in h["kvs"] if k not in (
        "tokenizer.ggml.tokens", "tokenizer.ggml.merges")] + MORE_KEYS
    cases = {}
    for i in range(n):
        case = h
        for _ in range(rng.choice((1, 1, 2, 3))):
            kind = rng.random()
            if kind < 0.45:
                raw = val(rng.choice((U32, I32, U64, I64)), rng.choice(INTS) % 2**31)
            elif kind < 0.75:
                raw = val(rng.choice((F32, F64)), rng.choice(FLOATS))
            elif kind < 0.85:
                raw = val(BOOL, rng.random() < 0.5)
            elif kind < 0.95:
                raw = arr(U32, [rng.choice(INTS[:8]) for _ in range(rng.randrange(5))])
            else:
                raw = val(STR, rng.choice(("", "none", "yarn", "llama", "gpt2")))
            case = setkv(case, rng.choice(keys), raw)
        cases[f"random_setting_{i}"] = case
    return cases


def _header_cases(h: dict) -> dict:
    return {f"version_{v}": {**h, "version": v} for v in (0, 1, 4, 2**16, 2**32 - 1)}


def _byte_cases(small: Path, h: dict, out: Path, rng: random.Random) -> list[Path]:
    """Truncations, bit flips and random bytes in the header of a small model."""
    raw = small.read_bytes()
    data_off, size = h["data_off"], len(raw)
    paths = []

    def keep(name, content: bytes, full_size: int | None = None):
        p = out / f"bytes_{name}.gguf"
        with open(p, "wb") as f:
            f.write(content)
            if full_size:
                f.truncate(full_size)
        paths.append(p)

    cuts = [0, 1, 3, 4, 7, 8, 16, 23, 24, 31, 40, 100, data_off // 3,
            data_off // 2, data_off - 1, data_off, data_off + 1000]
    head = raw[:data_off]
    for c in cuts:
        keep(f"cut_{c}", raw[:c])
    keep("cut_last_byte", head, size - 1)
    for i in range(70):  # single bit flips anywhere in the header
        b = bytearray(head)
        at = rng.randrange(len(b)) if i >= 10 else rng.randrange(24, 400)
        b[at] ^= 1 << rng.randrange(8)
        keep(f"flip_{i}_{at}", bytes(b), size)
    for i in range(20):  # a run of random bytes
        b = bytearray(head)
        at = rng.randrange(len(b) - 16)
        b[at:at + 8] = rng.randbytes(8)
        keep(f"random_{i}_{at}", bytes(b), size)
    for i, at in enumerate((8, 16)):  # counts: 0, one too many, huge
        for n in (0, 1, 2**40):
            b = bytearray(head)
            b[at:at + 8] = struct.pack("<Q", n)
            keep(f"count_{at}_{n}", bytes(b), size)
    keep("magic_ggml", b"lmgg" + head[4:], size)
    keep("zeros", bytes(4096))
    return paths


def make_cases(starter: Path, out: Path) -> list[Path]:
    """Write all fuzz cases into out; each file a few MB of disk at most."""
    rng = random.Random(16)
    full = parse(starter)
    full_data = full["size"] - full["data_off"]
    paths = []

    def put(name: str, case):
        h, data = case if isinstance(case, tuple) else (case, small_data)
        data = min(data, 2 * small_data)  # a claimed 2**62 bytes stays a claim
        paths.append(write(out / f"{name}.gguf", h, data))

    # the starter's own header with the settings the report named
    eps = "llama.attention.layer_norm_rms_epsilon"
    for name, key, raw in (("blocks_0", "llama.block_count", val(U32, 0)),
                           ("blocks_1000", "llama.block_count", val(U32, 1000)),
                           ("blocks_29", "llama.block_count", val(U32, 29)),
                           ("eps_nan", eps, val(F32, NAN)),
                           ("eps_negative", eps, val(F32, -1.0)),
                           ("heads_kv_0", "llama.attention.head_count_kv",
                            arr(U32, [3] * 29 + [0])),
                           ("rope_scaling", "llama.rope.scaling.type",
                            val(STR, "bogus")),
                           ("experts", "llama.expert_count", val(U32, 4)),
                           ("unchanged", "general.name", get(full, "general.name"))):
        paths.append(write(out / f"starter_{name}.gguf",
                           setkv(full, key, raw), full_data))
    small, small_data = layout(small_model(full))
    base = write(out / "small_unchanged.gguf", small, small_data)
    paths.append(base)
    for group in (_setting_cases(small), _header_cases(small), _arch_cases(small),
                  _random_setting_cases(small, rng, 60)):
        for name, case in group.items():
            put(name.replace("/", "_"), case)
    for name, case in {**_tensor_cases(small),
                       **_offset_cases(small, small_data)}.items():
        put(name, case)
    paths += _byte_cases(base, parse(base), out, rng)
    return paths


# ---- running them -------------------------------------------------------------

def _check_one(path: str) -> str:
    """kit info and kit.load (+2 tokens) on one file: 'ok', 'refused' or 'FAIL...'."""
    import kit
    from kit.cli import main
    from kit.engines import unload_all
    from kit.errors import KitError

    buf = io.StringIO()
    try:
        with redirect_stdout(buf), redirect_stderr(buf):
            rc = main(["info", path])
    except BaseException:  # SystemExit included: argparse, or worse
        return "FAIL kit info raised:\n" + traceback.format_exc()
    if "Traceback" in buf.getvalue():
        return "FAIL kit info printed a traceback:\n" + buf.getvalue()
    if rc not in (0, 1):
        return f"FAIL kit info returned {rc}"
    try:
        model = kit.load(path, quiet=True, check_fit=False, n_ctx=256,
                         n_threads=1)
        "".join(model.generate("Hello", max_tokens=2, seed=1))
        status = "loaded"
    except KitError:
        status = "refused"
    except BaseException:
        return "FAIL kit.load raised:\n" + traceback.format_exc()
    finally:
        unload_all()
    if rc != 0 and status == "loaded":
        return "FAIL kit info refused a file that kit.load ran"
    return status


def _worker(paths: list[str]) -> None:
    # the answers go through a copy of stdout; what native code prints on
    # file descriptor 1 goes nowhere
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    for i, p in enumerate(paths):
        print(json.dumps({"start": i}), file=answers, flush=True)
        print(json.dumps({"done": i, "status": _check_one(p)}), file=answers,
              flush=True)


def run_cases(paths: list[Path], env: dict) -> dict:
    """{path: status}; a signal is 'CRASH <n>', a stall 'HANG'."""
    todo = [str(p) for p in paths]
    results: dict = {}
    while todo:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        proc.stdin.write(json.dumps(todo))
        proc.stdin.close()
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout]
                         + [lines.put(None)], daemon=True).start()
        current = None
        while True:
            try:
                line = lines.get(timeout=PER_FILE_S)
            except queue.Empty:
                proc.kill()
                results[todo[current or 0]] = "HANG"
                break
            if line is None:
                rc = proc.wait()
                if current is not None:
                    results[todo[current]] = f"CRASH {rc}"
                break
            msg = json.loads(line)
            if "start" in msg:
                current = msg["start"]
            else:
                results[todo[msg["done"]]] = msg["status"]
                current = None
        proc.wait()
        todo = [p for p in todo if p not in results]
    return results


def _in_parallel(paths: list[Path], env: dict) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    shares = [paths[i::WORKERS] for i in range(WORKERS)]
    with ThreadPoolExecutor(WORKERS) as pool:
        parts = list(pool.map(lambda s: run_cases(s, env), shares))
    return {k: v for part in parts for k, v in part.items()}


def test_fuzzed_gguf_files_never_crash_hang_or_show_a_traceback(
        starter_path, tmp_path):
    out = tmp_path / "cases"
    out.mkdir()
    paths = make_cases(starter_path, out)
    assert len(paths) >= 200
    disk = sum(p.stat().st_blocks * 512 for p in paths)
    assert disk < 200 * 2**20, f"the cases take {disk / 2**20:.0f} MiB of disk"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KIT_N_THREADS": "1"}
    results = _in_parallel(paths, env)
    failures = {Path(p).name: s for p, s in results.items()
                if s not in ("loaded", "refused")}
    assert not failures, "\n".join(f"{k}: {v}" for k, v in sorted(failures.items()))
    by_name = {Path(p).stem: s for p, s in results.items()}
    # the cut-down model and the starter's own header still work...
    assert by_name["small_unchanged"] == by_name["starter_unchanged"] == "loaded"
    # ...and what used to abort llama.cpp is refused with a message instead
    for name in ("starter_blocks_0", "starter_blocks_1000", "starter_eps_nan",
                 "starter_eps_negative", "starter_heads_kv_0",
                 "starter_rope_scaling", "starter_experts",
                 "vocab_duplicate_5", "arch_smallthinker", "arch_paddleocr",
                 "arch_qwen2_rope_32", "arch_qwen3_values_32"):
        assert by_name[name] == "refused", name
    assert sum(s == "loaded" for s in results.values()) >= 20  # not all refused


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker(json.loads(sys.stdin.read()))
