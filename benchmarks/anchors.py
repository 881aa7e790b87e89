"""The kit beside llama.cpp's own tools, built from the same llama.cpp.

    python benchmarks/anchors.py [--model smollm2:135m] [--threads 2]
                                 [--only bench,one,room,chat]

The first run builds llama-bench, llama-batched-bench and llama-server from
the llama.cpp sources that the installed llama-cpp-python vendors (its source
package from PyPI, same version; about 15 minutes on two cores) and keeps them
in ~/.cache/kit/anchors/. Then, in one run, side by side, it prints each of
the kit's figures as a ratio to llama.cpp's:

  bench   `kit bench` pp64 / tg128 against llama-bench (decode alone)
  one     one streaming client, 64 tokens, through `kit serve` against
          llama-server (same model, threads, context, greedy settings)
  room    8 streaming clients at once, aggregate tokens/s and first byte
          p50/p90, cold prompts then the same prompts again (warm caches),
          `kit serve --parallel 8` against `llama-server -np 8`
  chat    a conversation that grows turn by turn: time to the first token of
          each turn, the kit's engine with its prompt cache, without it, and
          llama-server (which keeps the conversation's cache in its slot)

Each pair is measured in turn on the same quiet machine: run nothing else.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

import httpx

TARGETS = ("llama-bench", "llama-batched-bench", "llama-server")
GREEDY = dict(temperature=0.0, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1)
PROMPT = "Once upon a time, in a lighthouse by the sea, there lived"


# -- building the anchors ------------------------------------------------------
def anchors_dir() -> Path:
    base = Path(os.environ.get("KIT_CACHE", Path.home() / ".cache" / "kit"))
    return base / "anchors" / f"llama-cpp-python-{version('llama-cpp-python')}"


def build_anchors(jobs: int = 2) -> Path:
    """llama.cpp's own tools from llama-cpp-python's vendored sources (cached)."""
    out = anchors_dir()
    if all((out / "bin" / t).exists() for t in TARGETS):
        return out / "bin"
    ver = version("llama-cpp-python")
    with tempfile.TemporaryDirectory(prefix="kit-anchors-") as tmp:
        tmp = Path(tmp)
        print(f"Building llama.cpp's tools from llama-cpp-python {ver}'s sources "
              "(once; about 15 minutes on two cores)...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", "llama-cpp-python", f"llama-cpp-python=={ver}", "-d", str(tmp)],
                       check=True)
        sdist = next(tmp.glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = next(tmp.glob("llama_cpp_python-*/vendor/llama.cpp"))
        build = src / "build"
        subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                        "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                        "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON",
                        "-DLLAMA_BUILD_TOOLS=ON"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(build), f"-j{jobs}", "--target", *TARGETS],
                       check=True, stdout=subprocess.DEVNULL)
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(build / "bin", staging / "bin", symlinks=True)
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)  # complete or absent, never half there
    return out / "bin"


def tool(bin_dir: Path, name: str, *args: str, **kw):
    env = dict(os.environ, LD_LIBRARY_PATH=str(bin_dir))
    return subprocess.run([str(bin_dir / name), *args], env=env, **kw)


# -- the figures -----------------------------------------------------------------
def bench(bin_dir: Path, model, path: str, threads: int) -> list[tuple]:
    from kit.bench import measure

    done = tool(bin_dir, "llama-bench", "-m", path, "-p", "64", "-n", "128", "-t",
                str(threads), "-r", "3", "-o", "json", capture_output=True, text=True,
                check=True)
    ref = {("pp" if r["n_gen"] == 0 else "tg"): r["avg_ts"] for r in json.loads(done.stdout)}
    ours = {"pp": measure(model, "pp", 64)["tps_mean"], "tg": measure(model, "tg", 128)["tps_mean"]}
    return [(f"bench {t}{n} (tok/s)", ours[t], ref[t]) for t, n in (("pp", 64), ("tg", 128))]


def stream(url: str, model: str, prompt: str, max_tokens: int):
    """(tokens, seconds in all, seconds to the first byte) of one streamed completion."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": True,
            "stream_options": {"include_usage": True}, **GREEDY}
    t0 = time.perf_counter()
    first, n = None, 0
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            first = first or time.perf_counter()
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                n = (chunk.get("usage") or {}).get("completion_tokens", n) or n  # the server's count
    return n, time.perf_counter() - t0, first - t0


def crowd(url: str, model: str, prompts: list[str], max_tokens: int):
    """(aggregate tok/s, first-byte p50, p90) with every prompt streaming at once."""
    got = []

    def one(p):
        got.append(stream(url, model, p, max_tokens))
    threads = [threading.Thread(target=one, args=(p,)) for p in prompts]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    firsts = sorted(g[2] for g in got)
    p = lambda q: firsts[min(len(firsts) - 1, int(round(q * (len(firsts) - 1))))]  # noqa: E731
    return sum(g[0] for g in got) / wall, p(0.5), p(0.9)


class LlamaServer:
    """llama.cpp's own server on loopback, stopped on exit."""

    def __init__(self, bin_dir: Path, path: str, threads: int, n_ctx: int, parallel: int):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(bin_dir / "llama-server"), "-m", path, "-t", str(threads), "-tb", str(threads),
             "-c", str(n_ctx * parallel), "-np", str(parallel), "--host", "127.0.0.1",
             "--port", str(self.port), "--no-webui"],
            env=dict(os.environ, LD_LIBRARY_PATH=str(bin_dir)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self):
        for _ in range(600):
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("llama-server did not start")

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def one_client(bin_dir, name, path, threads, reps=3) -> list[tuple]:
    from kit.server import start

    ours, ref = [], []
    with start([name], n_ctx=2048, n_threads=threads, parallel=1, quiet=True) as kit_srv, \
            LlamaServer(bin_dir, path, threads, 2048, 1) as cpp:
        for url, out in ((kit_srv.url, ours), (cpp.url, ref)):
            stream(url, name, PROMPT, 4)  # loaded and warm
        for _ in range(reps):  # alternating, so a busy moment hits both
            for url, out in ((kit_srv.url, ours), (cpp.url, ref)):
                n, total, _ = stream(url, name, PROMPT, 64)
                out.append(n / total)
    return [("one client, 64 tokens, end to end (tok/s)", statistics.median(ours),
             statistics.median(ref))]


def room(bin_dir, name, path, threads, clients=8) -> list[tuple]:
    from kit.server import start

    prompts = [f"{PROMPT} {i} cats and" for i in range(clients)]
    rows = []
    with start([name], n_ctx=1024, n_threads=threads, parallel=clients, quiet=True,
               max_queue=clients) as kit_srv:
        stream(kit_srv.url, name, "Hello", 2)
        cold_k, warm_k = crowd(kit_srv.url, name, prompts, 64), crowd(kit_srv.url, name, prompts, 64)
    with LlamaServer(bin_dir, path, threads, 1024, clients) as cpp:
        stream(cpp.url, name, "Hello", 2)
        cold_c, warm_c = crowd(cpp.url, name, prompts, 64), crowd(cpp.url, name, prompts, 64)
    for label, k, c in (("cold", cold_k, cold_c), ("warm", warm_k, warm_c)):
        rows += [(f"{clients} clients {label}: aggregate (tok/s)", k[0], c[0]),
                 (f"{clients} clients {label}: first byte p50 (s)", k[1], c[1]),
                 (f"{clients} clients {label}: first byte p90 (s)", k[2], c[2])]
    return rows


def conversation(turns: int = 4):
    """A conversation of about 900 tokens by its third turn (the starter)."""
    text = ("Tell me about the history of public libraries, how they are run, "
            "who pays for them and what a librarian does every day. ") * 3
    return [text + f"(question {i + 1})" for i in range(turns)]


def chat_turns(bin_dir, name, path, threads) -> list[tuple]:
    from kit.engines import load

    rows, asks = [], conversation()
    model = load(name, n_ctx=4096, n_threads=threads, quiet=True)
    firsts = {}
    for cache in (True, False):
        msgs = []
        for i, q in enumerate(asks):
            msgs.append({"role": "user", "content": q})
            s = model.chat(msgs, max_tokens=120, cache=cache, **GREEDY)
            msgs.append({"role": "assistant", "content": s.text})
            firsts.setdefault(cache, []).append((s.stats.ttft_s, s.stats.prompt_tokens))
    with LlamaServer(bin_dir, path, threads, 4096, 1) as cpp:
        msgs, ref = [], []
        for q in asks:
            msgs.append({"role": "user", "content": q})
            body = {"model": name, "messages": msgs, "max_tokens": 120, "stream": True,
                    **GREEDY}
            t0, first, text = time.perf_counter(), None, []
            with httpx.stream("POST", cpp.url + "/v1/chat/completions", json=body,
                              timeout=600) as r:
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                        if delta:
                            first = first or time.perf_counter() - t0
                            text.append(delta)
            ref.append(first)
            msgs.append({"role": "assistant", "content": "".join(text)})
    for i, ((t, n), (t_off, _), t_ref) in enumerate(zip(firsts[True], firsts[False], ref)):
        rows.append((f"chat turn {i + 1} ({n} tokens): first token (s), no cache {t_off:.2f}",
                     t, t_ref))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2:135m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="bench,one,room,chat")
    ap.add_argument("--build-only", action="store_true")
    args = ap.parse_args(argv)
    bin_dir = build_anchors()
    if args.build_only:
        print(bin_dir)
        return 0
    from kit.engines import load
    from kit.models.registry import resolve

    path = str(resolve(args.model).path)
    rows = []
    want = set(args.only.split(","))
    if "bench" in want:
        rows += bench(bin_dir, load(args.model, n_ctx=2048, n_threads=args.threads,
                                    quiet=True), path, args.threads)
    if "one" in want:
        rows += one_client(bin_dir, args.model, path, args.threads)
    if "room" in want:
        rows += room(bin_dir, args.model, path, args.threads)
    if "chat" in want:
        rows += chat_turns(bin_dir, args.model, path, args.threads)
    print(f"\n{args.model}, {args.threads} threads, on {os.cpu_count()} cores "
          f"(llama.cpp from llama-cpp-python {version('llama-cpp-python')})")
    print(f"{'figure':<62} {'kit':>9} {'llama.cpp':>10} {'ratio':>7}")
    for label, ours, ref in rows:
        ratio = ours / ref if ref else float("nan")
        print(f"{label:<62} {ours:>9.2f} {ref:>10.2f} {ratio:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
