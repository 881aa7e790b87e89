"""`kit compare MODEL MODEL ... --prompts NAME|FILE` and `kit convert-ct MODEL`.

Thin shells over kit.compare and kit.engines.ct_convert.
"""
from __future__ import annotations

import sys
from kit.compare import compare
from kit.engines.ct_convert import to_ctransformers

SPEC_HELP = ("NAME, NAME@ENGINE (llamacpp, ctransformers) or NAME@http://HOST:PORT "
             "for a model server; e.g. smollm2:135m smollm2:135m-ct@ctransformers")


def cmd_compare(a) -> int:
    sampling = {k: v for k, v in (("temperature", a.temperature), ("seed", a.seed),
                                  ("max_tokens", a.max_tokens)) if v is not None}
    progress = None if a.json else (lambda msg: print(msg, file=sys.stderr))
    result = compare(a.models, a.prompts, engine=a.engine, n_ctx=a.ctx,
                     n_threads=a.threads, progress=progress, **sampling)
    if a.md:
        result.to_markdown(a.md)
    if a.out:
        result.to_json(a.out)
    if a.json:
        print(result.to_json())
        return 0
    for p in result.prompt_set["prompts"]:
        print(f"\n== {p['title']}: {p['prompt']}")
        for label in result.labels:
            r = result.answer(p["id"], label)
            if r.get("error"):
                print(f"-- {label}: error: {r['error']}")
                continue
            print(f"-- {label} ({r['generated_tokens']} tokens, "
                  f"{r['gen_tps']:.1f} tok/s):\n{r['answer'].strip()}")
    for path in (a.md, a.out):
        if path:
            print(f"\nSaved {path}", file=sys.stderr)
    return 0


def cmd_convert_ct(a) -> int:
    to_ctransformers(a.model, a.name, force=a.force)
    return 0


def register(sub) -> None:
    c = sub.add_parser("compare", help="the same prompts on several models, side by side")
    c.add_argument("models", nargs="+", metavar="MODEL", help=SPEC_HELP)
    c.add_argument("--prompts", default="roles",
                   help="built-in set (roles, quick) or a .json/.yaml/.txt file")
    c.add_argument("--engine", help="engine for models written without @ENGINE")
    c.add_argument("--json", action="store_true", help="print everything as JSON")
    c.add_argument("--md", metavar="FILE", help="also save a Markdown report")
    c.add_argument("--out", metavar="FILE", help="also save the JSON to a file")
    c.add_argument("--temperature", type=float, help="default 0 (always the likeliest)")
    c.add_argument("--seed", type=int, help="default 42")
    c.add_argument("--max-tokens", type=int, help="default 128")
    c.add_argument("--ctx", type=int, default=2048)
    c.add_argument("--threads", type=int)
    c.set_defaults(func=cmd_compare)
    v = sub.add_parser("convert-ct", help="make a copy of a model that ctransformers "
                       "can run (same weights and tokenizer)")
    v.add_argument("model", nargs="?", default=None)
    v.add_argument("--name", help="name for the copy (default: MODEL-ct)")
    v.add_argument("--force", action="store_true", help="make it again")
    v.set_defaults(func=cmd_convert_ct)
