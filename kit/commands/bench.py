"""`kit bench`: how fast models run here (pp and tg, like llama-bench)."""
from __future__ import annotations

import sys

from kit.util import text_table
from kit.bench import parse_list, run_bench, to_csv, to_json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="measure speed: prompt reading (pp) and generation (tg)",
        description="Measure prompt processing (pp) and text generation (tg) "
                    "speed, the way llama.cpp's llama-bench does.")
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="kit names or .gguf paths (default: the starter model)")
    p.add_argument("--threads", default=None, help="comma list, e.g. 1,2")
    p.add_argument("--gpu-layers", default="0", help="comma list, e.g. 0,8,all")
    p.add_argument("--pp", type=int, default=128, help="prompt tokens (0 = skip)")
    p.add_argument("--tg", type=int, default=64, help="generated tokens (0 = skip)")
    p.add_argument("--reps", type=int, default=3, help="repetitions per test")
    p.add_argument("--no-bandwidth", action="store_true",
                   help="skip the memory bandwidth test")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.add_argument("--csv", metavar="FILE", help="also save results as CSV")
    p.set_defaults(func=cmd_bench)


def format_table(df) -> str:
    """A plain-text table: one line per test."""
    rows = []
    for r in df.to_dict("records"):
        frac = r["bw_fraction"]
        rows.append({"model": r["model"][:22], "quant": r["quantization"],
                     "thr": r["threads"],
                     "gpu": "all" if r["gpu_layers"] == -1 else r["gpu_layers"],
                     "test": r["test"],
                     "tok/s": f"{r['tps_mean']:.1f} ± {r['tps_std']:.1f}",
                     # NaN: no ceiling
                     "of ceiling": f"{frac:.0%}" if frac == frac else "-"})
    return text_table(rows, right=("thr", "gpu", "tok/s", "of ceiling"))


def cmd_bench(a) -> int:
    df = run_bench(a.models or None, threads=a.threads,
                   gpu_layers=parse_list(a.gpu_layers, "gpu_layers", allow_all=True),
                   n_prompt=a.pp, n_gen=a.tg, reps=a.reps,
                   measure_bandwidth=not a.no_bandwidth, quiet=a.json)
    if a.csv:
        path = to_csv(df, a.csv)
        print(f"Saved {len(df)} rows to {path}", file=sys.stderr)
    if a.json:
        print(to_json(df))
    else:
        print(format_table(df))
        print("tok/s: mean ± standard deviation. OF CEILING: generation speed as a "
              "share of memory bandwidth / bytes read per token.")
    return 0
