"""Does the prompt cache change answers? Temperature-0 second turns, three ways.

    python benchmarks/prompt_cache.py [--model smollm2:135m] [--n 200]

For each of N two-turn conversations, the second turn's greedy answer is
written three times, right after the same first turn:

  fresh   cache=False: the whole prompt read afresh (the reference)
  kit     the default cache: only work a fresh start does bit for bit is
          reused (the prompt is read in chunks at multiples of 32 tokens)
  all     cache="all": everything shared is reused, the first answer's
          tokens too, as llama-server does

and the answers that differ from `fresh` are counted, with the prompt tokens
reused and the time to the first token. Figures from one quiet machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from itertools import product

TOPICS = ["a library card", "an interlibrary loan", "a reading room", "an e-book",
          "a catalogue", "a due date", "a reference desk", "a book club",
          "a museum pass", "a study room", "a renewal", "a hold on a book",
          "a library fine", "a children's story time", "a local history archive",
          "a public computer", "a printer", "a microfilm reader", "an audiobook",
          "a summer reading programme", "a makerspace", "a donation", "a bookmobile",
          "a quiet floor", "a newspaper archive"]
FIRST = ["What is {}?", "Explain {} to a child.", "Why would I need {}?",
         "Describe {} in two sentences."]
SECOND = ["Can you say that more simply?", "Give me one example.",
          "What should I do first?", "Is it free?"]
GREEDY = dict(temperature=0, repeat_penalty=1.1)


def conversations(n: int):
    for (topic, first), second in zip(product(TOPICS, FIRST), SECOND * (n // 4 + 1)):
        yield first.format(topic), second
        n -= 1
        if n <= 0:
            return


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2:135m")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args(argv)
    from kit.engines import load

    model = load(args.model, n_ctx=2048, quiet=True)
    system = {"role": "system", "content": "You are a helpful librarian. Answer briefly."}
    changed = {"kit": 0, "all": 0}
    reused = {"kit": [], "all": []}
    first_s = {"fresh": [], "kit": [], "all": []}
    n = 0
    for q1, q2 in conversations(args.n):
        turn1 = [system, {"role": "user", "content": q1}]
        a1 = model.chat(turn1, max_tokens=args.max_tokens, **GREEDY).text
        turn2 = turn1 + [{"role": "assistant", "content": a1},
                         {"role": "user", "content": q2}]
        answers = {}
        for way, cache in (("fresh", False), ("kit", True), ("all", "all")):
            model.chat(turn1, max_tokens=args.max_tokens, **GREEDY).text  # as in a chat
            s = model.chat(turn2, max_tokens=args.max_tokens, cache=cache, **GREEDY)
            answers[way] = s.text
            first_s[way].append(s.stats.ttft_s)
            if way != "fresh":
                reused[way].append(s.stats.prompt_cached / s.stats.prompt_tokens)
                changed[way] += answers[way] != answers["fresh"]
        n += 1
        if n % 20 == 0:
            print(f"{n} conversations: changed kit {changed['kit']}, all {changed['all']}",
                  flush=True)
    print(f"\n{args.model}: {n} second turns at temperature 0, {args.max_tokens} tokens each")
    print(f"{'cache':<8} {'answers changed':>16} {'prompt reused':>14} {'first token (s)':>16}")
    print(f"{'fresh':<8} {'(reference)':>16} {'0%':>14} "
          f"{statistics.median(first_s['fresh']):>16.3f}")
    for way in ("kit", "all"):
        print(f"{way:<8} {changed[way]:>9} of {n:<4} "
              f"{statistics.fmean(reused[way]):>13.0%} "
              f"{statistics.median(first_s[way]):>16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
