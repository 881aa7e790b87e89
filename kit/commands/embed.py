"""`kit embed MODEL TEXT ...`: turn texts into vectors (an embedding model).

    kit embed all-minilm:l6-v2 "a library card" "borrowing books"
    kit embed all-minilm:l6-v2 --file lines.txt --json     one text per line
    kit embed all-minilm:l6-v2 "a" "b" --similarity        cosine similarities
"""
from __future__ import annotations

import argparse
import json
import sys


def register(sub) -> None:
    p = sub.add_parser("embed", help="turn texts into vectors with an embedding model",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an embedding model, e.g. all-minilm:l6-v2")
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument("--file", help="read texts from this file, one per line "
                   "('-' for standard input)")
    p.add_argument("--json", action="store_true",
                   help="print {model, dimensions, embeddings: [[...], ...]}")
    p.add_argument("--similarity", action="store_true",
                   help="print the cosine similarity of every pair instead")
    p.add_argument("--no-truncate", action="store_true",
                   help="refuse texts longer than the model's context")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=cmd_embed)


def _read_texts(a) -> list[str]:
    from kit.errors import BadParameter

    texts = list(a.texts)
    if a.file:
        try:
            raw = sys.stdin.read() if a.file == "-" else \
                open(a.file, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as exc:
            raise BadParameter("--file", a.file, f"a readable UTF-8 text file ({exc})")
        texts += [line for line in raw.splitlines() if line.strip()]
    if not texts:
        raise BadParameter("TEXT", "nothing", "at least one text, or --file FILE")
    return texts


def cmd_embed(a) -> int:
    import warnings

    from kit.engines import load

    texts = _read_texts(a)
    model = load(a.model, n_threads=a.threads, quiet=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vectors = model.embed(texts, truncate=not a.no_truncate)
    for w in caught:  # truncation and the like: on stderr, stdout stays data
        print(f"note: {w.message}", file=sys.stderr)
    if a.similarity:
        sims = vectors @ vectors.T
        if a.json:
            print(json.dumps({"model": model.name, "texts": texts,
                              "similarity": sims.round(4).tolist()}))
            return 0
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                print(f"{sims[i, j]:+.3f}  {texts[i][:40]!r} ~ {texts[j][:40]!r}")
        return 0
    if a.json:
        print(json.dumps({"model": model.name, "dimensions": int(vectors.shape[1]),
                          "embeddings": vectors.tolist()}))
        return 0
    for text, row in zip(texts, vectors):
        head = " ".join(f"{x:+.4f}" for x in row[:8])
        print(f"{text[:40]!r}: [{head} ...] ({len(row)} numbers)")
    print(model.embed_stats.line(), file=sys.stderr)
    return 0
