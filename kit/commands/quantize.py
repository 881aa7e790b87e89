"""`kit quantize MODEL --types q8_0,q4_k_m [--force]`: thin shell over kit.quantize."""
from __future__ import annotations

import json
import sys
from kit.quantize import DEFAULT_TYPES, QUANT_TYPES, quantize
from kit.settings import get_settings


def _progress_bar():
    """One line on stderr per type, redrawn as tensors are done (terminals only)."""
    if not sys.stderr.isatty():
        return None  # piped or logged: the summary lines are enough

    def show(qtype: str, done: int, total: int) -> None:
        width = 30
        if done < total and done % max(1, total // width):
            return  # redraw only when the bar grows
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r  {qtype:<7} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done}/{total} tensors")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return show


def cmd_quantize(a) -> int:
    variants = quantize(a.model, a.types, force=a.force, threads=a.threads,
                        progress=None if a.json else _progress_bar(), quiet=a.json)
    if a.json:
        out = []
        for v in variants:
            row = v.row()
            row.update(path=str(v.path), tensor_types=v.tensor_types,
                       fallbacks=[{"wanted": f.wanted, "got": f.got, "reason": f.reason,
                                   "tensors": f.tensors} for f in v.fallbacks])
            out.append(row)
        print(json.dumps(out, indent=2))
    else:
        base = a.model or get_settings().default_model
        names = " ".join(v.name for v in variants)
        print(f"Registered: {', '.join(v.name for v in variants)}. Compare them "
              f"with the original: `kit eval {base} {names}`.")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize", help="make smaller versions of a model with llama.cpp",
        description="Write one quantized .gguf per type into the model store and "
        "register each as NAME-TYPE (e.g. smollm2:135m-q4_k_m).")
    p.add_argument("model", nargs="?", default=None, help="kit name or .gguf path")
    p.add_argument("--types", default=",".join(DEFAULT_TYPES),
                   help="comma-separated, from: " + ", ".join(QUANT_TYPES)
                   + f" (default {','.join(DEFAULT_TYPES)})")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", action="store_true", help="results as JSON")
    p.set_defaults(func=cmd_quantize)
