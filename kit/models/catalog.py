"""The curated catalog of workshop models, and what model names mean.

The list itself is data (kit/data/catalog.json); this module reads it and
answers questions about it: is this a catalog name, how big is it, will it fit.

>>> get("llama3.2:1b-q4_k_m")["repo"]
'bartowski/Llama-3.2-1B-Instruct-GGUF'
>>> parse_quant("Llama-3.2-1B-Instruct-Q4_K_M.gguf")
'Q4_K_M'
"""
from __future__ import annotations

import json
import re
from functools import lru_cache

from kit.fit import estimate_numbers
from kit.util import human_count, human_size, text_table

# About how many bits each stored number takes, per quantization type (file
# size x 8 / parameters for a typical 7B model; small models come out higher
# because their large word table is often kept at 6 or 8 bits).
QUANT_BITS = {
    "Q2_K": 3.0, "Q3_K_S": 3.5, "Q3_K_M": 3.9, "Q3_K_L": 4.3, "IQ4_XS": 4.3,
    "Q4_0": 4.5, "Q4_K_S": 4.6, "Q4_K_M": 4.9, "Q4_1": 5.0, "Q5_0": 5.5,
    "Q5_K_S": 5.5, "Q5_K_M": 5.7, "Q5_1": 6.0, "Q6_K": 6.6, "Q8_0": 8.5,
    "F16": 16.0, "BF16": 16.0, "F32": 32.0,
}
# Q4_K_M, IQ4_XS, Q8_0, Q4_0_4_8, F16, BF16, F32 between separators (- _ .)
_QUANT_RE = re.compile(
    r"(?:^|[-_.])((?:UD-)?I?Q[1-8](?:_[0-9A-Z]{1,2}){0,3}|BF16|F16|FP16|F32)"
    r"(?=[-_.]|$)", re.IGNORECASE)
_SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
CATALOG_NAME = re.compile(r"^[a-z][a-z0-9.-]*:[0-9.]+[mb](-[a-z0-9_]+)?$")


def parse_quant(filename: str) -> str | None:
    """The quantization named in a file name: '...-q4_k_m.gguf' -> 'Q4_K_M'."""
    stem = filename.rsplit("/", 1)[-1]
    stem = _SHARD_RE.sub(".gguf", stem)
    stem = re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    found = _QUANT_RE.findall(stem)
    if not found:
        return None
    quant = found[-1].upper().removeprefix("UD-")  # the last one names the file
    return "F16" if quant == "FP16" else quant


def shard_of(filename: str) -> tuple[int, int] | None:
    """(part, parts) for split files like 'x-00001-of-00003.gguf', else None."""
    m = _SHARD_RE.search(filename)
    return (int(m.group(1)), int(m.group(2))) if m else None


@lru_cache(maxsize=1)
def _load() -> dict:
    from importlib import resources

    text = resources.files("kit").joinpath("data/catalog.json").read_text()
    return json.loads(text)


def entries() -> list[dict]:
    """Every catalog entry (copies: changing them changes nothing)."""
    return [dict(e) for e in _load()["models"]]


def notes() -> str:
    """What in the catalog is verified and what is not."""
    return _load()["notes"]


def get(name: str) -> dict | None:
    """The entry for a catalog name, or None."""
    for e in _load()["models"]:
        if e["name"] == name.strip().lower():
            return dict(e)
    return None


def find(text: str) -> list[dict]:
    """Entries whose name, title, family or repository contain every word."""
    words = text.lower().split()
    out = []
    for e in _load()["models"]:
        hay = " ".join((e["name"], e["title"], e["family"], e["repo"])).lower()
        if all(w in hay for w in words):
            out.append(dict(e))
    return out


def by_file(repo_id: str, filename: str) -> dict | None:
    """The entry for a Hub repository and file, if the catalog has it."""
    for e in _load()["models"]:
        if e["repo"].lower() == repo_id.lower() and e["file"] == filename:
            return dict(e)
    return None


def estimate(entry: dict, n_ctx: int = 2048, ram_available: int | None = None):
    """Memory the entry needs (kit.fit.FitEstimate), before downloading it."""
    return estimate_numbers(entry["size"], entry["n_layers"], entry["n_kv_heads"],
                            entry["head_dim"], n_ctx, ram_available=ram_available)


def typical_shape(parameters: float) -> tuple[int, int, int]:
    """(layers, KV heads, head size) of the catalog model nearest in size.

    Used to estimate the KV cache of a Hub file the catalog does not know.
    """
    nearest = min(_load()["models"],
                  key=lambda e: abs(e["parameters"] - parameters))
    return nearest["n_layers"], nearest["n_kv_heads"], nearest["head_dim"]


def table(n_ctx: int = 2048, ram_available: int | None = None) -> list[dict]:
    """One row per entry: name, size, parameters, licence, memory, fits."""
    rows = []
    for e in _load()["models"]:
        est = estimate(e, n_ctx, ram_available)
        row = {"name": e["name"], "size": human_size(e["size"]),
               # three significant figures: 999,885,952 reads as 1B
               "parameters": human_count(int(float(f"{e['parameters']:.3g}"))),
               "quantization": e["quantization"], "license": e["license"],
               "memory": human_size(est.total)}
        if ram_available is not None:
            row["fits"] = "yes" if est.fits else "no"
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Rows from table() as aligned text columns."""
    if not rows:
        return "(no models)"
    return text_table(rows)
