"""Check a GGUF file in pure Python before llama.cpp touches it.

Reads the header only (metadata and the tensor list), never the weights,
and raises BadModelFile with a plain reason for anything llama.cpp might
choke on: a truncated download, a pickle file, a corrupt length field.

>>> scan("SmolLM2-135M-Instruct.Q4_1.gguf").metadata["general.architecture"]
'llama'
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from kit.errors import BadModelFile, ModelFileMissing
from kit.gguf_limits import problem as settings_problem

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_TENSOR_NAME = 63  # llama.cpp refuses names of GGML_MAX_NAME (64) or more
MAX_KEY = 65535  # the GGUF spec's limit for key names
MAX_STRING = 64 * 2**20  # chat templates are kilobytes; 64 MB is corrupt
MAX_ARRAY = 2**24  # the largest vocabularies hold a few hundred thousand
MAX_COUNT = 1_000_000  # tensors or keys; big models have a few thousand
MAX_DEPTH = 8  # arrays of arrays
CHUNK = 1 << 20

PICKLE_EXTS = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
PICKLE_PROBLEM = ("it is a PyTorch/pickle file, and pickle files can run "
                  "code when loaded; the kit only loads GGUF (and "
                  "safetensors for conversion)")
PICKLE_FIX = "Look for a .gguf version of this model and use that instead."
SETTINGS_FIX = ("Its settings contradict its weights or are out of range, "
                "which stops llama.cpp without a message: the file is damaged "
                "or was made by a faulty converter. Download it again, or "
                "convert it again with a current llama.cpp.")
SAFETENSORS_PROBLEM = "it is a safetensors file (weights for PyTorch)"
SAFETENSORS_FIX = ("Convert it to GGUF first (llama.cpp's convert_hf_to_gguf"
                   ".py does it), or download a .gguf version of the model.")
STRING, ARRAY = 8, 9
# GGUF value type -> struct format; 8 (string) and 9 (array) are special.
SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f",
           7: "?", 10: "Q", 11: "q", 12: "d"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple  # GGUF order: the fastest-changing dimension first
    type_name: str  # e.g. "Q4_1"
    offset: int  # absolute position of the first byte in the file
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class GGUFScan:
    path: str
    file_size: int
    version: int
    metadata: dict  # key -> int, float, bool, str or (nested) list
    tensors: tuple  # TensorInfo, in file order
    alignment: int
    data_offset: int  # where the tensor data section starts


class _Reader:
    """Reads little-endian fields from a file in chunks, never past its end."""

    def __init__(self, f, size: int, path):
        self.f, self.size, self.path = f, size, path
        self.buf, self.start, self.pos = b"", 0, 0  # buf[0] is at self.start
        self.where = "the file header"

    def tell(self) -> int:
        return self.start + self.pos

    def fail(self, problem: str, fix: str | None = None):
        raise BadModelFile(self.path, problem, fix)

    def need(self, n: int, read: bool = True) -> None:
        if self.pos + n <= len(self.buf):
            return
        at = self.tell()
        if at + n > self.size:
            self.fail(f"the file is truncated: it is {self.size:,} bytes "
                      f"long but {self.where} continues past its end")
        if not read:
            return
        self.f.seek(self.start + len(self.buf))
        more = self.f.read(max(n - (len(self.buf) - self.pos), CHUNK))
        self.buf, self.start, self.pos = self.buf[self.pos:] + more, at, 0
        if len(self.buf) < n:  # the file shrank while we read it
            self.fail("the file changed size while being read")

    def unpack(self, fmt: str, size: int):
        self.need(size)
        value = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def u32(self) -> int:
        return self.unpack("<I", 4)[0]

    def u64(self) -> int:
        return self.unpack("<Q", 8)[0]

    def string(self, limit: int = MAX_STRING, what: str = "a text") -> str:
        n = self.u64()
        if n > limit:
            self.fail(f"{what} in {self.where} claims to be {n:,} bytes "
                      f"long, more than the {limit:,} allowed: the file "
                      "is corrupt")
        self.need(n)
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int, depth: int = 0):
        if vtype in SCALARS:
            fmt = SCALARS[vtype]
            return self.unpack("<" + fmt, struct.calcsize(fmt))[0]
        if vtype == STRING:
            return self.string()
        if vtype != ARRAY or depth >= MAX_DEPTH:
            self.fail(f"{self.where} has an unknown value type {vtype}")
        etype, count = self.u32(), self.u64()
        if etype not in SCALARS and etype not in (STRING, ARRAY):
            self.fail(f"a list in {self.where} has an unknown type {etype}")
        if count > MAX_ARRAY:
            self.fail(f"a list in {self.where} claims {count:,} items: "
                      "the file is corrupt")
        if etype in SCALARS:  # numbers: one struct call for the whole list
            fmt = SCALARS[etype]
            return list(self.unpack(f"<{count}{fmt}",
                                    count * struct.calcsize(fmt)))
        if etype == STRING:  # the vocabulary: tens of thousands, keep it fast
            self.need(8 * count, read=False)  # room for the lengths alone?
            out, unpack_from = [], struct.unpack_from
            for _ in range(count):
                self.need(8)
                n = unpack_from("<Q", self.buf, self.pos)[0]
                self.pos += 8
                if n > MAX_STRING:
                    self.fail(f"a text in {self.where} claims to be {n:,}"
                              " bytes long: the file is corrupt")
                self.need(n)
                out.append(self.buf[self.pos:self.pos + n]
                           .decode("utf-8", errors="replace"))
                self.pos += n
            return out
        return [self.value(etype, depth + 1) for _ in range(count)]


def _refuse_other_formats(path: Path, head: bytes) -> None:
    """Name the format when a file is not GGUF, and the next step."""
    ext = path.suffix.lower()
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        raise BadModelFile(path, PICKLE_PROBLEM, PICKLE_FIX)  # raw pickle
    if ext == ".safetensors" or (len(head) > 9 and head[8:10] == b'{"'):
        raise BadModelFile(path, SAFETENSORS_PROBLEM, SAFETENSORS_FIX)
    if ext in PICKLE_EXTS:  # torch.save's zip of pickles, or older formats
        raise BadModelFile(path, PICKLE_PROBLEM, PICKLE_FIX)
    if head[:4] in (b"lmgg", b"tjgg", b"fmgg"):
        raise BadModelFile(
            path, "it is in the old GGML format from before August 2023",
            "Download a GGUF version of the model instead.")
    if head.startswith(b"version https://git-lfs"):
        raise BadModelFile(
            path, "it is a Git LFS pointer (a small text file), not the model",
            "Download the real file, e.g. with `git lfs pull`.")
    if head.lstrip()[:5].lower() in (b"<!doc", b"<html"):
        raise BadModelFile(
            path, "it is a web page, not a model",
            "The download probably saved an error page: download it again.")
    if ext != ".gguf":  # e.g. `kit run notes.txt`: not a damaged model at all
        raise BadModelFile(
            path, f"it is not a model file (it starts with {head[:4]!r})",
            "Give an installed model's name (see `kit list`) or the path of a "
            ".gguf file.")
    raise BadModelFile(path, f"not a GGUF file (starts with {head[:4]!r})")


def _open_checked(path) -> tuple[Path, int]:
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelFileMissing(p)
    if p.is_dir():
        inside = sorted(q.name for q in p.glob("*.gguf"))[:5]
        raise BadModelFile(
            p, "it is a folder, not a file",
            "Pass the path of the .gguf file itself"
            + (f" (in this folder: {', '.join(inside)})." if inside else "."))
    if not p.is_file():
        raise BadModelFile(p, "it is not a regular file",
                           "Pass the path of a .gguf file.")
    size = p.stat().st_size
    if size == 0:
        raise BadModelFile(p, "the file is empty (0 bytes)")
    return p, size


def _read_header(r: _Reader, path: Path) -> tuple[int, int, int]:
    r.need(min(r.size, 24))
    head = r.buf[:24]
    if head[:4] != MAGIC:
        _refuse_other_formats(path, head)
    version = r.unpack("<4xI", 8)[0]
    if version & 0xFFFF == 0 and version >> 16:  # byte-swapped number
        r.fail("it is a big-endian GGUF file (made for IBM mainframes)",
               "Download the ordinary (little-endian) version.")
    if version == 1:
        r.fail("it uses GGUF version 1 (2023), which is too old for "
               "llama.cpp", "Download a newer GGUF file of this model.")
    if version not in (2, 3):
        r.fail(f"it uses GGUF version {version}; the kit knows versions 2 "
               "and 3", "If the file is new, update the kit and "
               "llama-cpp-python (`pip install -U llama-cpp-python gguf`).")
    n_tensors, n_kv = r.u64(), r.u64()
    for what, n in (("tensors", n_tensors), ("metadata entries", n_kv)):
        if n > MAX_COUNT:
            r.fail(f"the header claims {n:,} {what}, far more than any "
                   "model has: the file is corrupt")
    return version, n_tensors, n_kv


def _read_metadata(r: _Reader, n_kv: int) -> dict:
    metadata: dict = {}
    for i in range(n_kv):
        r.where = f"metadata entry {i + 1} of {n_kv}"
        key = r.string(MAX_KEY, "a key name")
        r.where = f"metadata key {key!r}"
        if key in metadata:
            r.fail(f"the metadata key {key!r} appears twice")
        metadata[key] = r.value(r.u32())
    return metadata


def _read_tensor_info(r: _Reader, i: int, n: int):
    import gguf  # here, not at the top: it costs 0.15-0.25 s (numpy)

    r.where = f"the description of tensor {i + 1} of {n}"
    name = r.string(MAX_TENSOR_NAME, "a tensor name")
    r.where = f"the description of tensor {name!r}"
    n_dims = r.u32()
    if n_dims > MAX_DIMS:
        r.fail(f"tensor {name!r} has {n_dims} dimensions (at most 4)")
    shape = r.unpack(f"<{n_dims}Q", 8 * n_dims)
    type_id, offset = r.u32(), r.u64()
    try:
        qtype = gguf.GGMLQuantizationType(type_id)
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError):
        r.fail(f"tensor {name!r} has number type {type_id}, which the kit "
               "does not know", "The file is damaged, or newer than the kit:"
               " download it again or update `gguf` and llama-cpp-python.")
    n_elements = 1
    for d in shape:
        n_elements *= d
    if n_elements >= 2**63 or max(shape, default=0) >= 2**63:
        r.fail(f"tensor {name!r} claims an impossible shape {shape}")
    if shape and shape[0] % block:
        r.fail(f"tensor {name!r} of type {qtype.name} has a row of "
               f"{shape[0]} numbers, not a multiple of {block}")
    return name, shape, qtype.name, offset, n_elements, \
        n_elements // block * type_size


def scan(path) -> GGUFScan:
    """Check a GGUF file's header and return its metadata and tensor list."""
    p, size = _open_checked(path)
    with open(p, "rb") as f:
        r = _Reader(f, size, p)
        version, n_tensors, n_kv = _read_header(r, p)
        metadata = _read_metadata(r, n_kv)
        infos = [_read_tensor_info(r, i, n_tensors) for i in range(n_tensors)]
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if (type(alignment) is not int or alignment <= 0
            or alignment & (alignment - 1)):
        r.fail(f"general.alignment is {alignment!r}, not a power of two")
    data_offset = -(-r.tell() // alignment) * alignment
    tensors, names, need = [], set(), data_offset
    for name, shape, type_name, offset, n_elements, n_bytes in infos:
        if name in names:
            r.fail(f"two tensors are both named {name!r}")
        if offset % alignment:
            r.fail(f"tensor {name!r} starts at {offset}, which is not a "
                   f"multiple of the alignment ({alignment})")
        names.add(name)
        need = max(need, data_offset + offset + n_bytes)
        tensors.append(TensorInfo(name, shape, type_name, data_offset + offset,
                                  n_elements, n_bytes))
    if need > size:
        r.fail(f"the file is truncated: it is {size:,} bytes but its "
               f"tensors need {need:,}")
    by_offset = sorted(tensors, key=lambda t: t.offset)
    for a, b in zip(by_offset, by_offset[1:]):
        if a.offset + a.n_bytes > b.offset:
            r.fail(f"tensors {a.name!r} and {b.name!r} overlap")
    why = settings_problem(metadata, tensors)  # what llama.cpp asserts on
    if why:
        r.fail(why, SETTINGS_FIX)
    return GGUFScan(os.fspath(p), size, version, metadata, tuple(tensors),
                    alignment, data_offset)


def validate(path) -> None:
    """Raise ModelFileMissing or BadModelFile unless `path` is a sound GGUF."""
    scan(path)
