"""Search-and-answer figures on the bundled library documents (kit.documents).

Run with `python benchmarks/documents.py` (after `make setup`; the embedding
model is installed if missing). Prints figures; nothing is asserted (shared
machines are noisy: compare the ratios, not the seconds).

- Indexing: chunks per second for the whole bundled set into a fresh index
  (reading, chunking, embedding, saving), and the same folder again (every
  file unchanged, so nothing is embedded), side by side.
- Retrieval: hit rate @1, @3 and @5 on the bundled questions, by meaning
  (embeddings) and by keywords (BM25), from the same index, with the
  questions each method misses in its top 3 and the time per query.
- Answers: the share of the 58 questions whose answer contains the known
  fact (kit/data/documents/answer_facts.json), for the starter model and
  for qwen2.5-coder:1.5b when installed, with seconds per answer and each
  wrong answer. `--answers starter` (or `qwen`, `none`) picks the models;
  on two cores the starter takes a few minutes, qwen about half an hour.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODELS = {"starter": "smollm2:135m", "qwen": "qwen2.5-coder:1.5b"}


def answers(index, names, questions) -> None:
    import kit
    from kit.documents.measure import answer_rate
    from kit.models.registry import installed
    from kit.util import text_table

    rows = []
    for name in names:
        if name not in installed():
            print(f"\n{name} is not installed (kit pull {name}): skipped")
            continue
        model = kit.load(name, quiet=True)
        t0 = time.perf_counter()
        result = answer_rate(index, model, questions, k=3, max_tokens=80,
                             progress=lambda n, total, row: print(
                                 f"  {n}/{total} {'right' if row[2] else 'WRONG'}: "
                                 f"{row[0].question} -> {row[1][:90]!r}", flush=True))
        s = (time.perf_counter() - t0) / max(len(result.rows), 1)
        print(result)
        rows.append({"model": name, "right": f"{result.right} of {len(result.rows)}",
                     "share": f"{result.rate:.0%}",
                     "answer in top 3": f"{result.found}", "s/answer": f"{s:.1f}"})
    if rows:
        print(f"\nAnswers that contain the known fact ({len(questions)} questions, "
              "top 3 chunks by meaning, max_tokens 80, temperature 0)")
        print(text_table(rows, right=("share", "s/answer")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--answers", default="starter,qwen",
                    help="models whose answers to check: starter, qwen, both "
                    "comma-separated, or none")
    ap.add_argument("--limit", type=int, help="only the first N questions")
    args = ap.parse_args()

    import kit
    from kit.documents.index import index_folder
    from kit.documents.measure import bundled_folder, hit_rate, load_questions
    from kit.models.pull import pull
    from kit.models.registry import installed
    from kit.util import text_table

    if "all-minilm:l6-v2" not in installed():
        pull("all-minilm:l6-v2", quiet=True)
    model = kit.load("all-minilm:l6-v2", quiet=True)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"embedding with {model.name}, {model.describe()}")
    home = Path(tempfile.mkdtemp(prefix="kit-bench-docs-"))
    try:
        rows = []
        for run in ("fresh index", "again, unchanged"):
            t0 = time.perf_counter()
            index = index_folder(bundled_folder(), embedder=model, progress=False,
                                 home=home)
            s = time.perf_counter() - t0
            rep = index.report
            rows.append({"run": run, "chunks": rep.chunks, "embedded": rep.new_chunks,
                         "seconds": f"{s:.2f}", "chunks/s": f"{rep.chunks / s:,.1f}"})
        print(f"\nIndexing the bundled documents ({len(rep.files)} files)")
        print(text_table(rows, right=("chunks", "embedded", "seconds", "chunks/s")))

        questions = load_questions()[:args.limit]
        results, rows = {}, []
        for method in ("embeddings", "bm25"):
            t0 = time.perf_counter()
            results[method] = hit_rate(index, questions, k=5, method=method)
            per_query = (time.perf_counter() - t0) / len(questions)
            r = results[method]
            rows.append({"method": method, "@1": f"{r.at(1):.0%}", "@3": f"{r.at(3):.0%}",
                         "@5": f"{r.at(5):.0%}", "ms/query": f"{per_query * 1000:.1f}"})
        print(f"\nHit rate on {len(questions)} questions with known answers")
        print(text_table(rows, right=("@1", "@3", "@5", "ms/query")))
        for method, r in results.items():
            missed = [q.question for q, rank in zip(questions, r.ranks)
                      if rank is None or rank > 3]
            print(f"{method} misses in its top 3: {missed or 'none'}")
        names = [MODELS.get(a.strip(), a.strip()) for a in args.answers.split(",")
                 if a.strip() and a.strip() != "none"]
        answers(index, names, questions)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
