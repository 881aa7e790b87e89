"""`kit eval MODEL [MODEL ...] [--json] [--ctx 512]`: thin shell over kit.evaluate."""
from __future__ import annotations

import json
from kit.evaluate import DEFAULT_CTX, evaluate, format_table, load_eval_text


def cmd_eval(a) -> int:
    text = None
    if a.text:
        text = load_eval_text(a.text)
    results = evaluate(a.models, reference=a.reference, text=text,
                       n_ctx=a.ctx or DEFAULT_CTX, max_windows=a.windows,
                       threads=a.threads, quiet=a.json)
    if a.json:
        print(json.dumps([r.row() for r in results], indent=2))
    else:
        print(format_table(results))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="perplexity and KL divergence of models on a text",
        description="Perplexity of each model on a text (default: the bundled "
        "Shakespeare sonnets), and KL divergence and top-token agreement "
        "against a reference (default: the model with the most bits per weight, "
        "never a copy quantized from another MODEL).")
    p.add_argument("models", nargs="+", metavar="MODEL", help="kit names or .gguf paths")
    p.add_argument("--reference", help="compare against this model (default: the "
                   "most precise of MODELs that is not a re-quantized copy of another)")
    p.add_argument("--ctx", type=int, help="window size in tokens (default 512)")
    p.add_argument("--windows", type=int, help="use only the first N windows (faster)")
    p.add_argument("--text", help="a UTF-8 text file to evaluate on instead")
    p.add_argument("--threads", type=int)
    p.add_argument("--json", action="store_true", help="results as JSON")
    p.set_defaults(func=cmd_eval)
