"""Make a copy of a model that the ctransformers engine can run, offline.

ctransformers (last release 2023) embeds a llama.cpp from that year. It
refuses the starter model for three reasons found by trying:
1. the file has no `tokenizer.ggml.scores` (that llama.cpp demands them);
2. the vocabulary is GPT-2 style byte-level text ('Ġthe' for ' the'); that
   llama.cpp looks for a raw "\\n" token, does not find it, and crashes;
3. there is no `output.weight` (SmolLM2 reuses its input embeddings).

The copy fixes exactly these and nothing else:
- every weight tensor is copied byte for byte (same numbers, same Q4_1 and
  Q8_0 quantization), plus `output.weight`, a copy of `token_embd.weight`;
- the same vocabulary and merges, each ordinary token stored as the raw bytes
  it stands for; zero scores; the original byte-level tokens are kept under
  `kit.tokenizer.byte_level_tokens`, from which the kit tokenizes
  (kit.engines.bpe), because that llama.cpp's own BPE tokenizer predates
  SmolLM2's rules;
- all other metadata (chat template included) unchanged.
So it is the same model with the same tokenizer: greedy answers match
llama.cpp's on the original file (the tests check this).

>>> to_ctransformers("smollm2:135m")
Converted smollm2:135m -> smollm2:135m-ct (129 MB) for ctransformers ...
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from kit.engines.bpe import BYTE_LEVEL_KEY, CONTROL, USER_DEFINED, byte_to_letter
from kit.errors import KitError

SUFFIX = "-ct"
NORMAL = 1


def _raw(token: str, decoder: dict) -> bytes:
    try:
        return bytes(decoder[c] for c in token)
    except KeyError:  # not byte-level text
        return token.encode("utf-8")


def _kv_types(path) -> dict:
    """{key: (value type, item type)} from a GGUF header (already validated)."""
    import mmap
    import struct

    from kit.gguf_check import ARRAY, SCALARS, STRING

    sizes = {t: struct.calcsize(f) for t, f in SCALARS.items()}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        n_kv = struct.unpack_from("<Q", m, 16)[0]
        pos, out = 24, {}

        def skip(vtype, pos):
            if vtype == STRING:
                return pos + 8 + struct.unpack_from("<Q", m, pos)[0]
            if vtype == ARRAY:
                etype, count = struct.unpack_from("<IQ", m, pos)
                pos += 12
                if etype in sizes:
                    return pos + count * sizes[etype]
                for _ in range(count):
                    pos = skip(etype, pos)
                return pos
            return pos + sizes[vtype]

        for _ in range(n_kv):
            n = struct.unpack_from("<Q", m, pos)[0]
            key = bytes(m[pos + 8:pos + 8 + n]).decode("utf-8", "replace")
            vtype = struct.unpack_from("<I", m, pos + 8 + n)[0]
            pos += 12 + n
            etype = struct.unpack_from("<I", m, pos)[0] if vtype == ARRAY else None
            out[key] = (vtype, etype)
            pos = skip(vtype, pos)
    return out


def convert(src, dst) -> Path:
    """Write the ctransformers-ready copy of GGUF file `src` to `dst`."""
    import gguf
    import numpy as np
    from gguf import GGUFValueType as VT

    from kit.engines.ctransformers import TENSOR_TYPES
    from kit.modelfile import read_facts, scan

    facts = read_facts(src)  # validates: a damaged file stops here
    found = scan(src)
    md = found.metadata
    if facts.architecture != "llama":
        raise KitError(f"{src} is a {facts.architecture!r} model; the kit can only "
                       "convert llama-architecture models for ctransformers. "
                       "Run it with llama.cpp (engine='llamacpp').")
    if md.get("tokenizer.ggml.model") != "gpt2":
        raise KitError(f"{src} does not have a GPT-2 style vocabulary, so there is "
                       "nothing to convert: try engine='ctransformers' directly.")
    odd = sorted({r.type for r in facts.quant_summary} - set(TENSOR_TYPES))
    if odd:
        raise KitError(f"{src} holds {', '.join(odd)} numbers, which ctransformers "
                       "does not know. Quantize to Q4_0, Q4_1, Q5_0, Q8_0 or F16 "
                       "first, or run it with llama.cpp (engine='llamacpp').")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(dst.name + ".partial")
    types = _kv_types(src)
    writer = gguf.GGUFWriter(partial, "llama")
    decoder = {v: k for k, v in byte_to_letter().items()}
    tokens = md["tokenizer.ggml.tokens"]
    kinds = md.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    data = np.memmap(src, dtype=np.uint8, mode="r")
    try:
        for name, value in md.items():
            if name in ("general.architecture", "tokenizer.ggml.tokens"):
                continue
            vtype, etype = types[name]
            writer.add_key_value(name, value, VT(vtype),
                                 sub_type=None if etype is None else VT(etype))
        raw = [t.encode("utf-8") if k in (CONTROL, USER_DEFINED) else _raw(t, decoder)
               for t, k in zip(tokens, kinds)]
        writer.add_key_value("tokenizer.ggml.tokens", raw, VT.ARRAY, sub_type=VT.STRING)
        if "tokenizer.ggml.scores" not in md:
            writer.add_key_value("tokenizer.ggml.scores", [0.0] * len(tokens),
                                 VT.ARRAY, sub_type=VT.FLOAT32)
        writer.add_key_value(BYTE_LEVEL_KEY, tokens, VT.ARRAY, sub_type=VT.STRING)
        writer.add_string("kit.converted_from", os.path.basename(str(src)))
        tensors = list(found.tensors)
        if not any(t.name == "output.weight" for t in tensors):
            embd = next(t for t in tensors if t.name == "token_embd.weight")
            tensors.append(replace(embd, name="output.weight"))
        for t in tensors:  # the bytes as they are: nothing is recomputed
            qtype = gguf.GGMLQuantizationType[t.type_name]
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            shape = [*reversed(t.shape)]
            shape[-1] = shape[-1] // block * size
            writer.add_tensor(t.name, data[t.offset:t.offset + t.n_bytes].reshape(shape),
                              raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        read_facts(partial)  # check what we wrote before it gets the real name
        os.replace(partial, dst)
    finally:
        del data
        Path(partial).unlink(missing_ok=True)
    return dst


def to_ctransformers(name: str | None = None, new_name: str | None = None,
                     force: bool = False, quiet: bool = False):
    """Convert an installed model and register the copy as NAME-ct."""
    from kit.modelfile import human_size
    from kit.models.registry import installed, register, resolve
    from kit.util import sha256_file

    ref = resolve(name)
    new_name = new_name or ref.name + SUFFIX
    have = installed().get(new_name)
    if have and not force:
        if not quiet:
            print(f"{new_name} is ready: {have['path']}")
        return resolve(new_name)
    dst = ref.path.parent / (ref.path.stem + SUFFIX + ".gguf")
    convert(ref.path, dst)
    digest = sha256_file(dst)
    out = register(new_name, dst, digest, engine="ctransformers",
                   converted_from=ref.name, source_sha256=ref.sha256)
    if not quiet:
        print(f"Converted {ref.name} -> {new_name} ({human_size(dst.stat().st_size)}) "
              "for ctransformers: same weights and tokenizer, plus a copy of the "
              "embeddings as output.weight")
    return out
