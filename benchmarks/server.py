"""Server figures: the kit's local API against the in-process engine, side by side.

Run with `python benchmarks/server.py [--threads N]`. Prints one table; the
ratio compares figures measured in this same run, alternating between the
two sides, so a busy machine slows both alike. Targets: tokens/s through the
server for one client >= 0.9 of the in-process engine; time to first streamed
byte < 0.5 s. Aggregate tokens/s for 4 clients at once is printed beside them.

A room (`--room`, with `--model NAME` for another model than the starter): 8 streaming clients at once against one, on a server
answering 8 at once in one batch (`--parallel 8`) and, side by side, on one
answering one at a time (`--parallel 1`): aggregate tokens/s (target >= 3x one
client) and time to first byte p90 (target < 2 s); then 30 clients at once
with `--max-queue 30`: all answered, none refused.
"""
from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import httpx

import kit
from kit.server import start

MODEL = "smollm2:135m"  # --model changes it for the room figures
PROMPT = "Once upon a time, in a lighthouse by the sea, there lived"
N_TOKENS, N_CTX, REPS = 128, 2048, 5
GREEDY = dict(temperature=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1)


def engine_tps(model) -> float:
    model.llm.reset()  # no cached prompt, as for the server below
    stream = model.generate(PROMPT, max_tokens=N_TOKENS, **GREEDY)
    stream.text
    assert stream.stats.generated_tokens == N_TOKENS, stream.stats.line()
    return stream.stats.gen_tps


def server_stream(url: str, max_tokens: int = N_TOKENS, prompt: str = PROMPT):
    """(tokens/s between first and last token, tokens, time to first byte)."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}, **GREEDY}
    t0 = time.perf_counter()
    t_byte = t_first = t_last = None
    n = 0
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            now = time.perf_counter()
            if t_byte is None:
                t_byte = now - t0
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["text"]:
                t_first = t_first or now
                t_last = now
    # pieces can hold several tokens; the token count is the server's own
    tps = (n - 1) / (t_last - t_first) if t_last and t_last > t_first else 0.0
    return tps, n, t_byte


def first_byte(url: str) -> float:
    """Seconds from sending a one-line chat request to its first streamed byte."""
    body = {"model": "smollm2:135m", "stream": True, "max_tokens": 8,
            "messages": [{"role": "user", "content": "Hello, who are you?"}]}
    t0 = time.perf_counter()
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
        for _ in r.iter_raw():
            return time.perf_counter() - t0
    return float("nan")


def aggregate(url: str, clients: int = 4) -> tuple[float, float]:
    """Total tokens/s and wall time with `clients` streaming at once."""
    counts = []

    def one():
        counts.append(server_stream(url)[1])

    threads = [threading.Thread(target=one) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return sum(counts) / wall, wall


def crowd(url: str, clients: int, max_tokens: int = N_TOKENS):
    """(aggregate tok/s, p90 time to first byte, refused, answered) for
    `clients` streaming at once."""
    got, refused = [], []

    def one(i):
        try:  # each its own prompt, so no answer is another's copy
            got.append(server_stream(url, max_tokens, f"{PROMPT} {i} cats"))
        except httpx.HTTPStatusError as exc:
            refused.append(exc.response.status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttfb = sorted(g[2] for g in got) or [float("nan")]
    p90 = ttfb[min(len(ttfb) - 1, int(round(0.9 * (len(ttfb) - 1))))]
    return sum(g[1] for g in got) / wall, p90, len(refused), len(got)


def room(threads: int) -> None:
    """8 clients against 1, batched and one at a time; then 30 at once."""
    rows = []
    for parallel in (8, 1):
        with start([MODEL], n_ctx=N_CTX, n_threads=threads, quiet=True,
                   parallel=parallel, max_queue=30) as srv:
            server_stream(srv.url, 8)  # load the model
            one_tps, _, one_ttfb, _ = crowd(srv.url, 1)
            tps8, p90, refused8, _ = crowd(srv.url, 8)
            rows += [(f"--parallel {parallel}: 1 client (tok/s)", one_tps, ""),
                     (f"--parallel {parallel}: 8 clients, aggregate (tok/s)", tps8, ""),
                     (f"--parallel {parallel}: ratio 8 clients / 1", tps8 / one_tps,
                      ">= 3" if parallel > 1 else ""),
                     (f"--parallel {parallel}: 8 clients, first byte p90 (s)", p90,
                      "< 2" if parallel > 1 else ""),
                     (f"--parallel {parallel}: refused of 8", refused8, "0")]
            if parallel > 1:
                _, p90_30, refused30, answered30 = crowd(srv.url, 30, 32)
                rows += [("--parallel 8, --max-queue 30: 30 clients answered",
                          answered30, "30"),
                         ("  refused of 30", refused30, "0"),
                         ("  first byte p90 of 30 (s)", p90_30, "")]
    print(f"\nA room: {MODEL}, {threads} threads, {N_TOKENS} tokens each "
          "(32 for the 30); figures from one run on a shared machine")
    print(f"{'figure':<50} {'value':>9}  target")
    for name, value, target in rows:
        print(f"{name:<50} {value:>9.3f}  {target}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None,
                    help="llama.cpp threads on both sides (default: the kit's)")
    ap.add_argument("--room", action="store_true",
                    help="only the room figures: 8 and 30 clients at once")
    ap.add_argument("--model", default=MODEL,
                    help="the model for the room figures (e.g. qwen2.5-coder:1.5b, "
                         "whose answers read the memory more than they compute)")
    a = ap.parse_args()
    globals()["MODEL"] = a.model
    from kit.settings import get_settings

    threads = a.threads or get_settings().n_threads
    if a.room:
        return room(threads)
    model = kit.load("smollm2:135m", n_ctx=N_CTX, n_threads=threads, quiet=True)
    with start(["smollm2:135m"], n_ctx=N_CTX, n_threads=threads, quiet=True,
               parallel=1) as srv:  # one answer at a time: the bare loop's peer
        server_stream(srv.url, 8)  # load the model in the server, warm both
        engine_tps(model)
        local, remote = [], []
        for _ in range(REPS):  # interleaved, so drifts hit both sides
            local.append(engine_tps(model))
            tps, n, _ = server_stream(srv.url)
            assert n == N_TOKENS, f"server stopped early ({n} tokens)"
            remote.append(tps)
        ttfbs = [first_byte(srv.url) for _ in range(10)]
        agg, wall = aggregate(srv.url)
        status = srv.status()

    med = statistics.median
    rows = [
        ("generation, in-process engine (tok/s)", med(local), ""),
        ("generation through the server, 1 client (tok/s)", med(remote), ""),
        ("ratio server / in-process", med(remote) / med(local), ">= 0.9"),
        ("aggregate, 4 clients at once (tok/s)", agg, "printed beside"),
        ("  wall time for the 4 answers (s)", wall, ""),
        ("time to first streamed byte, chat (s)", med(ttfbs), "< 0.5"),
        ("time to first streamed byte, worst of 10 (s)", max(ttfbs), ""),
    ]
    print(f"smollm2:135m, {threads} threads, context {N_CTX}, {N_TOKENS} tokens, "
          f"median of {REPS}; the server finished {status['counters']['completed']} "
          f"answers and stopped {status['counters']['cancelled']} when the client "
          "left after the first byte")
    print(f"{'figure':<50} {'value':>9}  target")
    for name, value, target in rows:
        print(f"{name:<50} {value:>9.3f}  {target}")
    room(threads)


if __name__ == "__main__":
    main()
