"""Facts about a GGUF model file, read from its header without loading it.

>>> facts = read_facts("SmolLM2-135M-Instruct.Q4_1.gguf")
>>> print(facts.summary())
smollm2 135M · llama · 135M params · Q4_1 · 98 MB · ...
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from kit.gguf_check import GGUFScan, TensorInfo, scan, validate
from kit.util import human_count, human_size

__all__ = ["ModelFacts", "QuantRow", "read_facts", "scan", "validate",
           "facts_from_scan", "human_size", "human_count", "GGUFScan",
           "TensorInfo"]

_CACHE: dict = {}  # (resolved path, size, mtime_ns) -> ModelFacts
_CACHE_MAX = 32


@dataclass(frozen=True)
class QuantRow:
    """One number type in the file: how many tensors, numbers and bytes."""

    type: str
    tensors: int
    elements: int
    bytes: int


@dataclass(frozen=True)
class ModelFacts:
    """What a GGUF file says about its model; see read_facts."""

    path: str
    file_size: int
    name: str
    architecture: str | None
    parameters: int
    quantization: str  # the number type holding the most bytes, e.g. Q4_1
    file_type: str | None  # what the file says it is (general.file_type)
    quant_summary: tuple  # QuantRow per type, most bytes first
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    vocab_size: int | None
    has_chat_template: bool
    chat_template: str | None
    license: str | None
    bits_per_weight: float
    gguf_version: int

    def to_dict(self) -> dict:
        """Plain JSON-ready facts, without the (long) chat template text."""
        d = asdict(self)
        d.pop("chat_template")
        d["quant_summary"] = [asdict(row) for row in self.quant_summary]
        return d

    def summary(self) -> str:
        """One line: 'SmolLM2 · llama · 135M params · Q4_1 · 98 MB · ...'."""
        parts = [self.name, self.architecture or "unknown architecture",
                 f"{human_count(self.parameters)} params", self.quantization,
                 human_size(self.file_size)]
        if self.context_length:
            parts.append(f"context {self.context_length}")
        parts.append("chat template " + ("yes" if self.has_chat_template
                                         else "no"))
        parts.append(f"license {self.license or 'unknown'}")
        return " · ".join(parts)


def _int(value) -> int | None:
    # Some architectures store one number per layer (a list): report the
    # largest, which is what sizes memory.
    if isinstance(value, list):
        value = max((v for v in value if isinstance(v, int)), default=None)
    return value if isinstance(value, int) and not isinstance(value, bool) \
        else None


def _file_type_name(value) -> str | None:
    import gguf  # lazily: importing it (and numpy) takes 0.15-0.25 s

    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        name = gguf.LlamaFileType(value).name
    except ValueError:
        return str(value)
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")



def _display_name(md: dict) -> str | None:
    """A readable model name: base name, size and a one-word fine-tune label.

    general.name often carries a training code ("Smollm2 135M 8k Lc100K Mix1
    Ep2"); base name and size say the same thing plainly ("smollm2 135M").
    """
    base, size = md.get("general.basename"), md.get("general.size_label")
    if isinstance(base, str) and base and isinstance(size, str) and size:
        tune = md.get("general.finetune")
        word = f" {tune}" if isinstance(tune, str) and tune.isalpha() else ""
        return f"{base} {size}{word}"
    name = md.get("general.name")
    return name if isinstance(name, str) else None


def facts_from_scan(s: GGUFScan) -> ModelFacts:
    """Turn an already-checked scan into ModelFacts (no file access)."""
    md = s.metadata
    arch = md.get("general.architecture")
    arch = arch if isinstance(arch, str) else None
    a = f"{arch}." if arch else "\0"  # "\0": never matches a key

    rows: dict[str, list[int]] = {}
    for t in s.tensors:
        row = rows.setdefault(t.type_name, [0, 0, 0])
        row[0] += 1
        row[1] += t.n_elements
        row[2] += t.n_bytes
    summary = tuple(sorted((QuantRow(k, *v) for k, v in rows.items()),
                           key=lambda r: -r.bytes))
    parameters = sum(r.elements for r in summary)
    data_bytes = sum(r.bytes for r in summary)

    tokens = md.get("tokenizer.ggml.tokens")
    vocab = len(tokens) if isinstance(tokens, list) else \
        _int(md.get(a + "vocab_size"))
    template = md.get("tokenizer.chat_template")
    template = template if isinstance(template, str) and template else None
    name = _display_name(md)
    lic = md.get("general.license")
    head_count = _int(md.get(a + "attention.head_count"))
    head_count_kv = _int(md.get(a + "attention.head_count_kv"))
    return ModelFacts(
        path=s.path,
        file_size=s.file_size,
        name=name if isinstance(name, str) and name else Path(s.path).stem,
        architecture=arch,
        parameters=parameters,
        quantization=summary[0].type if summary else "none",
        file_type=_file_type_name(md.get("general.file_type")),
        quant_summary=summary,
        context_length=_int(md.get(a + "context_length")),
        embedding_length=_int(md.get(a + "embedding_length")),
        block_count=_int(md.get(a + "block_count")),
        head_count=head_count,
        head_count_kv=head_count if head_count_kv is None else head_count_kv,
        vocab_size=vocab,
        has_chat_template=template is not None,
        chat_template=template,
        license=lic if isinstance(lic, str) and lic else None,
        bits_per_weight=round(8 * data_bytes / parameters, 3)
        if parameters else 0.0,
        gguf_version=s.version,
    )


def read_facts(path) -> ModelFacts:
    """Check a GGUF file and return its facts; repeated calls are instant."""
    p = Path(path).expanduser()
    try:
        resolved = p.resolve()
        st = resolved.stat()
    except OSError:  # missing, or unreadable: let validation explain
        return facts_from_scan(scan(p))
    key = (os.fspath(resolved), st.st_size, st.st_mtime_ns)
    facts = _CACHE.get(key)
    if facts is None:
        facts = facts_from_scan(scan(resolved))
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))  # forget the oldest
        _CACHE[key] = facts
    return facts
